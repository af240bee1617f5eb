package p2p

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// netnsPrefix names the namespaces this test creates: <prefix><pid>-a/b.
const netnsPrefix = "cvnp2p-"

// TestMDNSDiscoveryInNetns runs two LAN nodes (this test binary re-executed,
// see runLanNode) in two network namespaces joined by a veth pair. Each
// starts a Host with the default Config: no addresses, no bootstrap, mDNS
// on. Both must discover each other by mDNS, connect, and receive each
// other's GossipSub message.
func TestMDNSDiscoveryInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	removeStaleNetns(t)

	pid := os.Getpid()
	ns := [2]string{fmt.Sprintf("%s%d-a", netnsPrefix, pid), fmt.Sprintf("%s%d-b", netnsPrefix, pid)}
	dev := [2]string{"cva", "cvb"}
	cidr := [2]string{"10.231.0.1/24", "10.231.0.2/24"} // only inside our namespaces
	t.Cleanup(func() {
		for _, n := range ns {
			if out, err := exec.Command("ip", "netns", "delete", n).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
				t.Logf("ip netns delete %s: %v: %s", n, err, out)
			}
		}
	})
	for _, n := range ns {
		ipCmd(t, "netns", "add", n)
	}
	// Create the veth pair inside the namespaces, so deleting them removes it.
	ipCmd(t, "-n", ns[0], "link", "add", dev[0], "type", "veth", "peer", "name", dev[1], "netns", ns[1])
	for i := range ns {
		ipCmd(t, "-n", ns[i], "addr", "add", cidr[i], "dev", dev[i])
		ipCmd(t, "-n", ns[i], "link", "set", dev[i], "multicast", "on", "up")
		ipCmd(t, "-n", ns[i], "link", "set", "lo", "up")
	}

	type nodeEvent struct {
		node int
		at   time.Time
		ev   lanEvent
	}
	events := make(chan nodeEvent, 256)
	done := make(chan struct{})
	var readers sync.WaitGroup
	t.Cleanup(readers.Wait) // runs after the processes are gone (cleanups are LIFO)
	var launched [2]time.Time

	for i := range ns {
		cmd := exec.Command("ip", "netns", "exec", ns[i], exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), lanNodeEnv+"=1", "GOLOG_LOG_LEVEL=error")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		launched[i] = time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatalf("start LAN node %d: %v", i, err)
		}
		t.Cleanup(func() {
			stdin.Close() // asks the node to shut down cleanly
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
			if t.Failed() && stderr.Len() > 0 {
				t.Logf("LAN node %d stderr:\n%s", i, stderr.String())
			}
		})
		readers.Add(1)
		go func() {
			defer readers.Done()
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				var e lanEvent
				if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
					e = lanEvent{Ev: "garbage", Data: sc.Text()}
				}
				select {
				case events <- nodeEvent{i, time.Now(), e}:
				case <-done:
					return
				}
			}
			_, _ = io.Copy(io.Discard, stdout)
		}()
	}
	// Registered after the process cleanups, so it runs before them: the
	// readers stop sending, and exit once the processes' stdout closes.
	t.Cleanup(func() { close(done) })

	type state struct {
		id        string
		mdnsFound map[string]float64 // peer -> ms since the node's host start
		foundAt   map[string]time.Time
		connected map[string]bool
		got       map[string]string
	}
	st := [2]*state{}
	for i := range st {
		st[i] = &state{mdnsFound: map[string]float64{}, foundAt: map[string]time.Time{}, connected: map[string]bool{}, got: map[string]string{}}
	}
	var trace []string
	complete := func() bool {
		for i := range st {
			o := st[1-i].id
			if st[i].id == "" || o == "" {
				return false
			}
			if _, ok := st[i].mdnsFound[o]; !ok || !st[i].connected[o] || st[i].got[o] == "" {
				return false
			}
		}
		return true
	}
	deadline := time.After(30 * time.Second)
	for !complete() {
		select {
		case e := <-events:
			trace = append(trace, fmt.Sprintf("node %d: %+v", e.node, e.ev))
			s := st[e.node]
			switch e.ev.Ev {
			case "start":
				s.id = e.ev.ID
			case "mdns-found":
				s.mdnsFound[e.ev.Peer] = e.ev.MS
				s.foundAt[e.ev.Peer] = e.at
			case "connected":
				s.connected[e.ev.Peer] = true
			case "message":
				s.got[e.ev.Peer] = e.ev.Data
			case "error", "garbage":
				t.Fatalf("LAN node %d: %s: %s", e.node, e.ev.Ev, e.ev.Data)
			}
		case <-deadline:
			t.Fatalf("LAN nodes did not discover each other and exchange messages within 30s; events:\n%s", strings.Join(trace, "\n"))
		}
	}
	for i := range st {
		o := st[1-i].id
		if want := "hello from " + o; st[i].got[o] != want {
			t.Errorf("node %d got %q from the other node, want %q", i, st[i].got[o], want)
		}
	}
	t.Logf("LAN node events:\n%s", strings.Join(trace, "\n"))
	// Node 1 started last; discovery time is measured from its launch (and,
	// per node, from its own host start).
	both := st[0].foundAt[st[1].id]
	if at := st[1].foundAt[st[0].id]; at.After(both) {
		both = at
	}
	t.Logf("mDNS discovery in netns: node0 found node1 %.1f ms after its host start, node1 found node0 %.1f ms after its host start; both discovered %v after launching node1 (process start included)",
		st[0].mdnsFound[st[1].id], st[1].mdnsFound[st[0].id], both.Sub(launched[1]).Round(time.Millisecond))
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// removeStaleNetns deletes namespaces left by earlier runs of this test
// whose process is gone (a crash or kill skips t.Cleanup).
func removeStaleNetns(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], netnsPrefix) {
			continue
		}
		name := fields[0]
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(name, netnsPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
				t.Logf("removing stale %s: %v: %s", name, err, out)
			}
		}
	}
}
