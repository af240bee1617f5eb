package room

import (
	"errors"
	"testing"
	"time"
)

// Issue 9.1: a peer restarted behind a frozen connection. The PeerDown of
// the old connection starts a probe that goes to the frozen process; the
// transport then reports the peer up again (the new process) and the probe
// fails when the old connection is closed under it. The member is probed
// again over the new path instead of being dropped, and the second probe's
// reply (the new epoch) replaces the old state: no MemberLeft, no
// MemberJoined.
func TestMachineProbeFailedAfterPeerUpProbesAgain(t *testing.T) {
	cfg := testConfig()
	a := newTM(t, "a", 1, cfg)
	b1 := newTM(t, "b", 1, cfg)
	a.out()
	b1.mustSet(t0, "gen", "1")
	a.deliver(t0, b1, b1.out().publish...)

	down := t0.Add(100 * time.Millisecond)
	a.peerDown(down, "b")
	probe := a.out().fetches[0]
	a.peerUp(down.Add(5*time.Millisecond), "b")
	snap := a.out().fetches
	if len(snap) != 1 || snap[0].purpose != fetchSnapshot {
		t.Fatalf("fetches after PeerUp = %+v, want one snapshot fetch", snap)
	}
	a.fetched(down.Add(time.Second), probe, FetchReply{}, errors.New("stream reset"))
	o := a.out()
	if len(o.events) != 0 {
		t.Fatalf("a probe that failed after the peer came up again removed it: %q", describe(o.events))
	}
	if len(o.fetches) != 1 || o.fetches[0].purpose != fetchProbe {
		t.Fatalf("fetches = %+v, want a new probe", o.fetches)
	}
	b2 := newTM(t, "b", 2, cfg)
	b2.mustSet(t0, "gen", "2")
	a.fetched(down.Add(time.Second+10*time.Millisecond), o.fetches[0], FetchReply{State: b2.heartbeat()}, nil)
	o = a.out()
	eq(t, "events", describe(o.events), []string{"presence-changed b remote ~gen"})
	if got := a.state("b")["gen"]; got != "2" {
		t.Errorf("gen = %q, want 2", got)
	}

	// A probe that fails with no PeerUp after its start still removes.
	a.peerDown(down.Add(2*time.Second), "b")
	probe = a.out().fetches[0]
	a.fetched(down.Add(2100*time.Millisecond), probe, FetchReply{}, errors.New("unreachable"))
	eq(t, "events", describe(a.out().events), []string{"presence-changed b timeout -gen gone", "member-left b timeout"})
}
