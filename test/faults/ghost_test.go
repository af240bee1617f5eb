package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/convene-p2p/convene/internal/proc"
)

// Issue 16.2: a crashed member must not be brought back by relays of its
// old messages. C is killed with SIGKILL and newcomer N1 joins at once
// through B, which still holds C (so N1's join snapshot relays C's last
// heartbeat); then a newcomer joins every 2.5 s, each through the previous one, and
// the older members fetch each newcomer's snapshot. C is gone everywhere
// within the room timeout of its kill (the crash bound: a relay proves at
// most that it was alive a heartbeat ago), and no process that dropped C
// ever reports it joining again; newcomers that start after the bound
// never see it at all. 1 run, 10 with CONVENE_LONG=1.
func TestCrashedMemberNotBroughtBackByRelays(t *testing.T) {
	const timeout = 3 * time.Second
	for i := range reps(1, 10) {
		t.Run(fmt.Sprint(i), func(t *testing.T) { relayChain(t, timeout) })
		if t.Failed() {
			break
		}
	}
}

func relayChain(t *testing.T, timeout time.Duration) {
	start := func(name string, boot ...string) (*proc.Proc, string, string) {
		args := append(proc.LocalArgs(name, timeout), "--room", "r")
		for _, b := range boot {
			args = append(args, "--bootstrap", b)
		}
		p := proc.Start(t, name, proc.Options{}, args...)
		ready := p.Ready(startup)
		return p, ready.Str("peer"), proc.TCPAddr(t, ready, "/ip4/127.0.0.1/tcp/")
	}
	a, _, addrA := start("A")
	b, _, addrB := start("B", addrA)
	c, pc, _ := start("C", addrA)
	for _, p := range []*proc.Proc{a, b} {
		p.Wait(20*time.Second, "C joins", proc.Joined("r", pc))
	}
	c.Wait(20*time.Second, "C joined", proc.Type("room-joined"))

	// B is not connected to C: it drops C on A's suspect, 500ms after A's
	// probe failed, and relays C until then. N1 joins through B in that
	// window, so its join snapshot holds C's last heartbeat, and it never
	// got A's suspect (published before it was there).
	procs := []*proc.Proc{a, b}
	c.Kill()
	killed := time.Now()
	n1, _, addr := start("N1", addrB)
	procs = append(procs, n1)
	// A newcomer every 2.5 s, each through the previous one. The ticker is
	// the scenario's arrival schedule (less than one timeout apart), not a
	// wait for anything: every check below waits for events.
	arrivals := time.NewTicker(2500 * time.Millisecond)
	defer arrivals.Stop()
	for i := 2; i <= 5; i++ {
		<-arrivals.C
		var n *proc.Proc
		n, _, addr = start(fmt.Sprintf("N%d", i), addr)
		procs = append(procs, n)
	}
	bound := killed.Add(timeout)
	// Wait until the last newcomer met the others, then check every log.
	last := procs[len(procs)-1]
	last.Wait(20*time.Second, "the last newcomer joins", proc.Type("room-joined"))
	if now := time.Now(); now.Before(bound.Add(time.Second)) {
		t.Fatalf("scenario too short: %v after the kill", now.Sub(killed))
	}
	for _, p := range procs {
		left := false
		for _, e := range p.Events() {
			switch {
			case proc.Left("r", pc)(e):
				left = true
			case proc.Joined("r", pc)(e):
				at, _ := time.Parse(time.RFC3339Nano, e.Str("time"))
				if left {
					t.Errorf("%s: C joined again after it left, at %v after the kill", p.Name, at.Sub(killed))
				}
				if at.After(bound) {
					t.Errorf("%s: C joined %v after the kill (bound %v)", p.Name, at.Sub(killed), timeout)
				}
			}
		}
		m := p.Mark()
		p.Send("members")
		ev, _ := p.WaitFrom(m, 10*time.Second, "members", proc.Type("members"))
		if listsPeer(ev, pc) {
			t.Errorf("%s still lists C %v after its kill", p.Name, time.Since(killed))
		}
	}
	if t.Failed() {
		for _, p := range procs {
			t.Logf("%s:\n%s", p.Name, p.Output())
		}
	}
}

// listsPeer reports whether a members event lists peer.
func listsPeer(ev proc.Event, peer string) bool {
	ms, _ := ev["members"].([]any)
	for _, m := range ms {
		if mm, _ := m.(map[string]any); mm["peer"] == peer {
			return true
		}
	}
	return false
}
