// Package heal tests that rooms heal by themselves after faults (issue 16):
// real peer processes in network namespaces (mDNS) and on loopback (DHT),
// links cut at a virtual switch, connections torn down, processes killed.
// Nothing sleeps on wall time: every wait is for an event with a deadline.
package heal

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/convene-p2p/convene/internal/proc"
)

// long reports whether the long variants run (CONVENE_LONG=1).
func long() bool { return os.Getenv("CONVENE_LONG") != "" }

// member is one peer process in a test room.
type member struct {
	p    *proc.Proc
	id   string
	side int
}

// startSide starts n processes named <prefix>0.. in LAN node ns of lan,
// all in room "r" with mDNS on and the DHT off. extra flags are appended.
func startSide(t *testing.T, lan *proc.LAN, ns, n int, prefix string, extra ...string) []*member {
	t.Helper()
	var ms []*member
	for i := range n {
		name := fmt.Sprintf("%s%d", prefix, i)
		args := append([]string{"run", "--json", "--dht", "off", "--timeout", "3s", "--name", name, "--room", "r"}, extra...)
		ms = append(ms, &member{p: proc.Start(t, name, proc.Options{Netns: lan.NS(ns)}, args...), side: ns})
	}
	for _, m := range ms {
		m.id = m.p.Ready(60 * time.Second).Str("peer")
	}
	return ms
}

// waitAllJoined waits until every member has reported every other one as
// joined at or after its mark (nil marks: since it started); with cross,
// only members of the other side. It returns when the last one did.
func waitAllJoined(t *testing.T, ms []*member, marks map[*member]int, cross bool, timeout time.Duration, what string) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, a := range ms {
		for _, b := range ms {
			if a == b || cross && a.side == b.side {
				continue
			}
			a.p.WaitFrom(marks[a], time.Until(deadline), fmt.Sprintf("%s: %s sees %s join", what, a.p.Name, b.p.Name), proc.Joined("r", b.id))
		}
	}
	return time.Now()
}

func marksOf(ms []*member) map[*member]int {
	m := make(map[*member]int, len(ms))
	for _, x := range ms {
		m[x] = x.p.Mark()
	}
	return m
}

// killTCP destroys, inside namespace ns, every TCP socket to dst (ss -K):
// what a keepalive timeout does to a connection over a dead link, without
// waiting the ≈ 30–40 s it takes.
func killTCP(t *testing.T, ns, dst string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "ss", "-K", "-t", "dst", dst).CombinedOutput()
	if err != nil {
		t.Fatalf("ss -K in %s: %v\n%s", ns, err, out)
	}
}

// tcpTo counts the established TCP sockets in namespace ns to dst.
func tcpTo(t *testing.T, ns, dst string) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "ss", "-H", "-t", "state", "established", "dst", dst).CombinedOutput()
	if err != nil {
		t.Fatalf("ss in %s: %v\n%s", ns, err, out)
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n
}

// waitNoTCP waits (polling ss every 250 ms) until namespaces a and b have
// no established TCP connection to each other's address, and returns how
// long that took.
func waitNoTCP(t *testing.T, lan *proc.LAN, a, b int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for tcpTo(t, lan.NS(a), lan.Addr(b))+tcpTo(t, lan.NS(b), lan.Addr(a)) > 0 {
		select {
		case <-deadline:
			t.Fatalf("connections between %s and %s still open after %v", lan.Addr(a), lan.Addr(b), timeout)
		case <-tick.C:
		}
	}
	return time.Since(start)
}
