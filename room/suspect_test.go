package room

import (
	"errors"
	"testing"
	"time"
)

// suspectRoom is a room of a (the observer), b (the accuser, connected to
// c) and c (the subject, not connected to a), all members at t0.
func suspectRoom(t *testing.T) (a, b, c *tm) {
	t.Helper()
	cfg := testConfig()
	a, b, c = newTM(t, "a", 1, cfg), newTM(t, "b", 1, cfg), newTM(t, "c", 1, cfg)
	c.mustSet(t0, "cursor", "1")
	for _, x := range []*tm{a, b} {
		x.out()
		x.deliver(t0, b, b.heartbeat())
		x.deliver(t0, c, c.heartbeat())
		x.deliver(t0, a, a.heartbeat())
		x.out()
	}
	c.out()
	return a, b, c
}

// A member whose probe of a member fails (its connection closed and the
// direct fetch failed) removes it and tells the others: a suspect naming
// the subject's incarnation.
func TestMachineFailedProbePublishesSuspect(t *testing.T) {
	_, b, c := suspectRoom(t)
	down := t0.Add(time.Second)
	b.peerDown(down, "c")
	probe := b.out().fetches[0]
	b.fetched(down.Add(5*time.Millisecond), probe, FetchReply{}, errors.New("connection refused"))
	o := b.out()
	eq(t, "publish at once", kinds(o.publish), []string{"suspect"})
	b.tick(down.Add(5*time.Millisecond + b.cfg.restartGrace()))
	eq(t, "events after the restart grace", describe(b.out().events), []string{"presence-changed c timeout -cursor gone", "member-left c timeout"})
	if m := o.publish[0]; m.Subject != "c" || m.SubjectEpoch != c.epoch() || m.Epoch != b.epoch() {
		t.Errorf("suspect = %+v, want subject c epoch %d from b epoch %d", m, c.epoch(), b.epoch())
	}
}

// A member that is not connected to the subject drops it when the
// refutation window ends without a sign of life — well before Timeout.
func TestMachineSuspectedMemberDroppedAfterRefutationWindow(t *testing.T) {
	a, b, c := suspectRoom(t)
	at := t0.Add(time.Second)
	a.deliver(at, b, Message{Kind: KindSuspect, Epoch: b.epoch(), Subject: "c", SubjectEpoch: c.epoch()})
	times, outs := a.run(at, at.Add(time.Second))
	var removed time.Time
	for i, o := range outs {
		for _, ev := range o.events {
			if ev.Type == MemberLeft && ev.Member.Peer == "c" {
				removed = times[i]
				if ev.Reason != ReasonTimeout {
					t.Errorf("reason %v, want timeout", ev.Reason)
				}
			}
		}
	}
	if want := at.Add(refuteWindow); !removed.Equal(want) {
		t.Fatalf("c removed at %v, want at the end of the refutation window %v", removed.Sub(t0), want.Sub(t0))
	}
	eq(t, "members", a.memberIDs(), []string{"a", "b"})
	// c's messages later (a partition healed, say) bring it back.
	a.deliver(at.Add(2*time.Second), c, c.heartbeat())
	a.tick(at.Add(2*time.Second + a.cfg.readmitHold()))
	if o := a.out(); !hasEvent(o.events, MemberJoined, "c") {
		t.Fatalf("c not readmitted after the hold: %q", describe(o.events))
	}
}

// The subject refutes a suspect about itself with a heartbeat at once;
// a member that hears from the subject within the window keeps it.
func TestMachineSuspectRefutedBySubject(t *testing.T) {
	a, b, c := suspectRoom(t)
	at := t0.Add(time.Second)
	suspect := Message{Kind: KindSuspect, Epoch: b.epoch(), Subject: "c", SubjectEpoch: c.epoch()}
	a.deliver(at, b, suspect)
	c.deliver(at, b, suspect)
	times, outs := c.run(at, at.Add(refuteWindow))
	var refutation []Message
	for i, o := range outs {
		for _, m := range o.publish {
			if m.Kind == KindHeartbeat && len(refutation) == 0 {
				refutation = append(refutation, m)
				if d := times[i].Sub(at); d > maxAnswerJitter {
					t.Errorf("refutation after %v, want within %v", d, maxAnswerJitter)
				}
			}
		}
	}
	if len(refutation) == 0 {
		t.Fatal("c did not refute")
	}
	a.deliver(at.Add(20*time.Millisecond), c, refutation...)
	_, outs = a.run(at.Add(20*time.Millisecond), at.Add(2*refuteWindow))
	for _, o := range outs {
		for _, ev := range o.events {
			if ev.Type == MemberLeft {
				t.Errorf("refuted member removed: %q", describe([]Event{ev}))
			}
		}
	}
	eq(t, "members", a.memberIDs(), []string{"a", "b", "c"})
}

// Only a current member can accuse, only the subject's current
// incarnation can be accused, and repeated accusations do not extend or
// restart the window.
func TestMachineSuspectIgnoredFromStrangersAndForOtherIncarnations(t *testing.T) {
	cfg := testConfig()
	a, b, c := suspectRoom(t)
	at := t0.Add(time.Second)
	x := newTM(t, "x", 1, cfg) // never announced to a
	a.deliver(at, x, Message{Kind: KindSuspect, Epoch: 1, Subject: "c", SubjectEpoch: c.epoch()})
	a.deliver(at, b, Message{Kind: KindSuspect, Epoch: b.epoch() + 1, Subject: "c", SubjectEpoch: c.epoch()})
	a.deliver(at, b, Message{Kind: KindSuspect, Epoch: b.epoch(), Subject: "c", SubjectEpoch: c.epoch() + 1})
	a.deliver(at, b, Message{Kind: KindSuspect, Epoch: b.epoch(), Subject: "nobody", SubjectEpoch: 1})
	if len(a.suspects) != 0 {
		t.Fatalf("suspects = %v, want none", a.suspects)
	}
	a.run(at, at.Add(2*refuteWindow))
	eq(t, "members", a.memberIDs(), []string{"a", "b", "c"})

	// A second accusation later does not move the deadline.
	a.deliver(at, b, Message{Kind: KindSuspect, Epoch: b.epoch(), Subject: "c", SubjectEpoch: c.epoch()})
	a.deliver(at.Add(refuteWindow/2), b, Message{Kind: KindSuspect, Epoch: b.epoch(), Subject: "c", SubjectEpoch: c.epoch()})
	if s := a.suspects["c"]; !s.due.Equal(at.Add(refuteWindow)) {
		t.Errorf("due %v, want %v", s.due.Sub(t0), at.Add(refuteWindow).Sub(t0))
	}
}
