package room

import (
	"errors"
	"testing"
	"time"

	"github.com/convene-p2p/convene/room/roomnet"
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
	a.fetched(down.Add(time.Second), probe, roomnet.FetchReply{}, errors.New("stream reset"))
	o := a.out()
	if len(o.events) != 0 {
		t.Fatalf("a probe that failed after the peer came up again removed it: %q", describe(o.events))
	}
	if len(o.fetches) != 1 || o.fetches[0].purpose != fetchProbe {
		t.Fatalf("fetches = %+v, want a new probe", o.fetches)
	}
	b2 := newTM(t, "b", 2, cfg)
	b2.mustSet(t0, "gen", "2")
	a.fetched(down.Add(time.Second+10*time.Millisecond), o.fetches[0], roomnet.FetchReply{State: b2.heartbeat()}, nil)
	o = a.out()
	eq(t, "events", describe(o.events), []string{"presence-changed b remote ~gen"})
	if got := a.state("b")["gen"]; got != "2" {
		t.Errorf("gen = %q, want 2", got)
	}

	// A probe that fails with no PeerUp after its start still removes.
	a.peerDown(down.Add(2*time.Second), "b")
	probe = a.out().fetches[0]
	a.fetched(down.Add(2100*time.Millisecond), probe, roomnet.FetchReply{}, errors.New("unreachable"))
	a.tick(down.Add(2100*time.Millisecond + cfg.restartGrace()))
	eq(t, "events", describe(a.out().events), []string{"presence-changed b timeout -gen gone", "member-left b timeout"})
}

// Issue 16.4: kill -9, then a restart with the same key. The probe of the
// dead process fails at once; the member keeps its place and presence for
// the restart grace, and the new incarnation arriving within it replaces
// the old one: its state and name, no MemberLeft/MemberJoined pair. A
// message of the dead incarnation still in flight during the grace does
// not save it; a restart after the grace is a pair (as documented).
func TestMachineRestartWithinGraceAfterFailedProbeIsSeamless(t *testing.T) {
	cfg := testConfig()
	for _, tc := range []struct {
		name  string
		after time.Duration // restart arrives this long after the failed probe
		want  []string
	}{
		{"within the grace", cfg.restartGrace() - time.Millisecond,
			[]string{"member-updated b(B2)", "presence-changed b remote +new -old"}},
		{"after the grace", cfg.restartGrace(),
			[]string{"presence-changed b timeout -old gone", "member-left b timeout", "member-joined b(B2)", "presence-changed b remote +new"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTM(t, "a", 1, cfg)
			b1 := newTM(t, "b", 1, cfg)
			a.out()
			b1.mustSet(t0, "old", "1")
			a.deliver(t0, b1, b1.out().publish...)
			down := t0.Add(time.Second)
			a.peerDown(down, "b")
			probe := a.out().fetches[0]
			failed := down.Add(time.Millisecond)
			a.fetched(failed, probe, roomnet.FetchReply{}, errors.New("connection refused"))
			// In flight from the dead process: no reprieve.
			if o := a.deliver(failed.Add(time.Millisecond), b1, b1.heartbeat()); len(o.events) != 0 {
				t.Fatalf("events = %q", describe(o.events))
			}
			b2 := newTM(t, "b", 2, cfg)
			b2.self.Name = "B2"
			b2.mustSet(t0, "new", "1")
			now := failed.Add(tc.after)
			a.tick(now)
			var evs []Event
			evs = append(evs, a.out().events...)
			evs = append(evs, a.deliver(now, b2, b2.heartbeat()).events...)
			eq(t, "events", describe(evs), tc.want)
			// Past the grace: nothing more, the new incarnation stays.
			a.tick(failed.Add(2 * cfg.restartGrace()))
			if o := a.out(); len(o.events) != 0 {
				t.Errorf("events after the grace: %q", describe(o.events))
			}
			eq(t, "members", a.memberIDs(), []string{"a", "b"})
		})
	}
}
