package room

import (
	"testing"
	"time"

	"github.com/convene-p2p/convene/room/roomnet"
)

// Issue 16.3: a member that left during a partition must not flap back at
// the heal. a dropped b by timeout during the cut; b quit on the other
// side. At the heal the connections flush what was queued: b's messages
// of the epoch that said goodbye, before or after the goodbye, directly
// or relayed in a fetch reply. None of them produces a join at a; a
// member that is really back (no goodbye) is readmitted after the hold,
// and a new epoch at once.
func TestMachineGoodbyeIsFinalForItsEpochAtHeal(t *testing.T) {
	cfg := testConfig()
	type step struct {
		leave bool // b's goodbye; else a heartbeat
		relay bool // through a fetch reply of another member
	}
	hb, bye, relayed := step{}, step{leave: true}, step{relay: true}
	for _, tc := range []struct {
		name     string
		flush    []step
		wantBack bool
	}{
		{"heartbeats then the goodbye in one flush", []step{hb, hb, bye}, false},
		{"goodbye then heartbeats", []step{bye, hb, hb}, false},
		{"relayed heartbeat then the goodbye", []step{relayed, bye}, false},
		{"goodbye then a relayed heartbeat", []step{bye, relayed}, false},
		{"heartbeats, no goodbye: back after the hold", []step{hb, hb}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSigner()
			a, b, c := newTM(t, "a", 1, cfg), newTM(t, "b", 1, cfg), newTM(t, "c", 1, cfg)
			a.out()
			b.mustSet(t0, "where", "before")
			b.out()
			s.deliver(a, t0, b, b.heartbeat())
			s.deliver(c, t0, b, b.heartbeat())
			a.tick(t0.Add(cfg.Timeout)) // the cut: a drops b
			if o := a.out(); !hasEvent(o.events, MemberLeft, "b") {
				t.Fatalf("a did not drop b: %q", describe(o.events))
			}
			heal := t0.Add(cfg.Timeout + 5*time.Second)
			var evs []Event
			for i, st := range tc.flush {
				now := heal.Add(time.Duration(i) * time.Millisecond)
				switch {
				case st.leave:
					a.receive(now, "b", roomnet.Message{Kind: roomnet.KindLeave, Epoch: b.epoch()}, nil)
				case st.relay:
					s.deliver(c, now, b, b.heartbeat()) // c still holds b
					s.now = now
					a.fetched(now, fetchRequest{peer: "c", purpose: fetchSnapshot, started: now}, s.reply(t, c), nil)
				default:
					a.receive(now, "b", b.heartbeat(), nil)
				}
				evs = append(evs, a.out().events...)
			}
			a.tick(heal.Add(time.Second))
			evs = append(evs, a.out().events...)
			if got := hasEvent(evs, MemberJoined, "b"); got != tc.wantBack {
				t.Fatalf("b joined: %v, want %v (events %q)", got, tc.wantBack, describe(evs))
			}
			if tc.wantBack {
				return
			}
			if hasEvent(evs, MemberLeft, "b") {
				t.Errorf("b left again: %q", describe(evs))
			}
			// Later messages of that epoch stay out; a new one is in at once.
			if o := a.deliver(heal.Add(2*time.Second), b, b.heartbeat()); len(o.events) != 0 {
				t.Errorf("events: %q", describe(o.events))
			}
			b2 := newTM(t, "b", 2, cfg)
			b2.out()
			if o := a.deliver(heal.Add(2*time.Second), b2, b2.heartbeat()); !hasEvent(o.events, MemberJoined, "b") {
				t.Errorf("the new epoch was not admitted at once: %q", describe(o.events))
			}
		})
	}
}
