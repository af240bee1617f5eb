package proc

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

// NeedNetns skips the test where network namespaces cannot be made (not
// root, no ip command) outside CI; in CI (CI set) that is a failure: .ci/run
// runs as root and installs iproute2.
func NeedNetns(t testing.TB) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "not root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "the ip command (iproute2) is missing"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "" {
		t.Skipf("%s: skipping a network-namespace test outside CI", why)
	}
	t.Fatalf("%s, but CI must run the network-namespace tests", why)
}

var lanSeq atomic.Int64

// LAN is a virtual Ethernet segment made of network namespaces: one switch
// namespace with a bridge, and Len() node namespaces, each linked to the
// bridge by a veth pair (eth0 in the node, with address Addr(i)/24 and
// multicast on; lo up). Processes started with Options{Netns: l.NS(i)} see
// each other by mDNS. Down(i) and Up(i) cut and restore node i's link at
// the switch (its eth0 stays up, as when a cable or Wi-Fi drops further
// along). Everything lives inside namespaces the LAN made; they are deleted
// when the test ends.
type LAN struct {
	t      testing.TB
	prefix string
	n      int
	subnet int
}

// NewLAN builds a LAN of n node namespaces. It calls NeedNetns.
func NewLAN(t testing.TB, n int) *LAN {
	t.Helper()
	NeedNetns(t)
	seq := lanSeq.Add(1)
	l := &LAN{t: t, prefix: fmt.Sprintf("cvt%d-%d", os.Getpid(), seq), n: n, subnet: int(100 + seq%100)}
	t.Cleanup(l.remove)
	sw := l.prefix + "-sw"
	l.ip("netns", "add", sw)
	l.ip("-n", sw, "link", "add", "br0", "type", "bridge")
	l.ip("-n", sw, "link", "set", "br0", "up")
	l.ip("-n", sw, "link", "set", "lo", "up")
	for i := range n {
		ns := l.NS(i)
		l.ip("netns", "add", ns)
		port := fmt.Sprintf("p%d", i)
		l.ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", sw)
		l.ip("-n", sw, "link", "set", port, "master", "br0")
		l.ip("-n", sw, "link", "set", port, "up")
		l.ip("-n", ns, "addr", "add", l.Addr(i)+"/24", "dev", "eth0")
		l.ip("-n", ns, "link", "set", "eth0", "multicast", "on")
		l.ip("-n", ns, "link", "set", "eth0", "up")
		l.ip("-n", ns, "link", "set", "lo", "up")
	}
	return l
}

// Len is the number of node namespaces.
func (l *LAN) Len() int { return l.n }

// NS is the name of node namespace i.
func (l *LAN) NS(i int) string { return fmt.Sprintf("%s-n%d", l.prefix, i) }

// Addr is node namespace i's address on the LAN (10.<subnet>.0.<i+1>).
func (l *LAN) Addr(i int) string { return fmt.Sprintf("10.%d.0.%d", l.subnet, i+1) }

// Down cuts node i off the LAN (its switch port goes down).
func (l *LAN) Down(i int) {
	l.t.Helper()
	l.ip("-n", l.prefix+"-sw", "link", "set", fmt.Sprintf("p%d", i), "down")
}

// Up links node i to the LAN again.
func (l *LAN) Up(i int) {
	l.t.Helper()
	l.ip("-n", l.prefix+"-sw", "link", "set", fmt.Sprintf("p%d", i), "up")
}

func (l *LAN) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (l *LAN) remove() {
	for i := range l.n {
		_ = exec.Command("ip", "netns", "del", l.NS(i)).Run()
	}
	_ = exec.Command("ip", "netns", "del", l.prefix+"-sw").Run()
}
