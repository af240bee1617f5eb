package heal

import (
	"fmt"
	"testing"
	"time"

	"github.com/convene-p2p/convene/internal/proc"
)

// TestQuitIsSeenAsLeftByMembersTheLeaverIsNotConnectedTo is issue 16.6:
// an explicit leave is never reported as a timeout by members the
// leaver's neighbours can reach. On loopback, mDNS and DHT off, a hub H
// and members M0, M1 connected to H only; in each round a newcomer L
// connects to H only (or, every other round, to M0 only), joins, is seen
// by everyone, and quits. Every other member must report it left with
// reason "left", never "timeout" (Timeout 3 s: a lost goodbye shows as a
// timeout within 3 s). The short variant runs 4 rounds; CONVENE_LONG=1
// runs 40.
func TestQuitIsSeenAsLeftByMembersTheLeaverIsNotConnectedTo(t *testing.T) {
	rounds := 4
	if long() {
		rounds = 40
	}
	start := func(name, boot string) (*proc.Proc, string, string) {
		args := append(proc.LocalArgs(name, 3*time.Second), "--room", "r")
		if boot != "" {
			args = append(args, "--bootstrap", boot)
		}
		p := proc.Start(t, name, proc.Options{}, args...)
		ready := p.Ready(60 * time.Second)
		return p, ready.Str("peer"), proc.TCPAddr(t, ready, "/ip4/127.0.0.1/tcp/")
	}
	hub, _, hubAddr := start("h", "")
	m0, m0ID, m0Addr := start("m0", hubAddr)
	m1, m1ID, _ := start("m1", hubAddr)
	members := []*proc.Proc{hub, m0, m1}
	hub.Wait(30*time.Second, "m0 joins", proc.Joined("r", m0ID))
	hub.Wait(30*time.Second, "m1 joins", proc.Joined("r", m1ID))
	m0.Wait(30*time.Second, "m1 joins", proc.Joined("r", m1ID))
	m1.Wait(30*time.Second, "m0 joins", proc.Joined("r", m0ID))

	for round := range rounds {
		via := hubAddr
		if round%2 == 1 {
			via = m0Addr
		}
		marks := make([]int, len(members))
		for i, m := range members {
			marks[i] = m.Mark()
		}
		l, lID, _ := start(fmt.Sprintf("l%d", round), via)
		for i, m := range members {
			m.WaitFrom(marks[i], 30*time.Second, fmt.Sprintf("round %d: %s joins", round, l.Name), proc.Joined("r", lID))
		}
		l.Send("quit")
		quit := time.Now()
		for i, m := range members {
			ev, _ := m.WaitFrom(marks[i], 10*time.Second, fmt.Sprintf("round %d: %s leaves", round, l.Name), proc.Left("r", lID))
			if r := ev.Str("reason"); r != "left" {
				t.Fatalf("round %d: %s reports %s gone with reason %q after %v, want \"left\" (it quit)",
					round, m.Name, l.Name, r, time.Since(quit).Round(time.Millisecond))
			}
		}
		if code := l.WaitExit(10 * time.Second); code != 0 {
			t.Fatalf("round %d: %s exited %d", round, l.Name, code)
		}
	}
	t.Logf("%d quits, each seen as left by all %d members", rounds, len(members))
}
