package room

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/convene-p2p/convene/room/roomnet"
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
	// c knows a and b as members too (a through relays), so it takes b's
	// accusations seriously.
	c.deliver(t0, b, b.heartbeat())
	c.deliver(t0, a, a.heartbeat())
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
	b.fetched(down.Add(5*time.Millisecond), probe, roomnet.FetchReply{}, errors.New("connection refused"))
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
	a.deliver(at, b, roomnet.Message{Kind: roomnet.KindSuspect, Epoch: b.epoch(), Subject: "c", SubjectEpoch: c.epoch()})
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
	if st := a.stats.snapshot(); st.Suspected != 1 || st.SuspectDrops != 1 || st.Refuted != 0 || st.LeftTimeout != 1 {
		t.Errorf("stats %+v: want Suspected 1, SuspectDrops 1, Refuted 0, LeftTimeout 1", st)
	}
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
	suspect := roomnet.Message{Kind: roomnet.KindSuspect, Epoch: b.epoch(), Subject: "c", SubjectEpoch: c.epoch()}
	a.deliver(at, b, suspect)
	c.deliver(at, b, suspect)
	times, outs := c.run(at, at.Add(refuteWindow))
	var refutation []roomnet.Message
	for i, o := range outs {
		for _, m := range o.publish {
			if m.Kind == roomnet.KindHeartbeat && len(refutation) == 0 {
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
	if st := a.stats.snapshot(); st.Suspected != 1 || st.Refuted != 1 || st.SuspectDrops != 0 {
		t.Errorf("a's stats %+v: want Suspected 1, Refuted 1, SuspectDrops 0", st)
	}
	if st := c.stats.snapshot(); st.Refutations != 1 {
		t.Errorf("c's stats: Refutations %d, want 1", st.Refutations)
	}
}

// Only a current member can accuse, only the subject's current
// incarnation can be accused, and repeated accusations do not extend or
// restart the window.
func TestMachineSuspectIgnoredFromStrangersAndForOtherIncarnations(t *testing.T) {
	cfg := testConfig()
	a, b, c := suspectRoom(t)
	at := t0.Add(time.Second)
	x := newTM(t, "x", 1, cfg) // never announced to a
	a.deliver(at, x, roomnet.Message{Kind: roomnet.KindSuspect, Epoch: 1, Subject: "c", SubjectEpoch: c.epoch()})
	a.deliver(at, b, roomnet.Message{Kind: roomnet.KindSuspect, Epoch: b.epoch() + 1, Subject: "c", SubjectEpoch: c.epoch()})
	a.deliver(at, b, roomnet.Message{Kind: roomnet.KindSuspect, Epoch: b.epoch(), Subject: "c", SubjectEpoch: c.epoch() + 1})
	a.deliver(at, b, roomnet.Message{Kind: roomnet.KindSuspect, Epoch: b.epoch(), Subject: "nobody", SubjectEpoch: 1})
	if len(a.suspects) != 0 {
		t.Fatalf("suspects = %v, want none", a.suspects)
	}
	a.run(at, at.Add(2*refuteWindow))
	eq(t, "members", a.memberIDs(), []string{"a", "b", "c"})

	// A second accusation later does not move the deadline.
	a.deliver(at, b, roomnet.Message{Kind: roomnet.KindSuspect, Epoch: b.epoch(), Subject: "c", SubjectEpoch: c.epoch()})
	a.deliver(at.Add(refuteWindow/2), b, roomnet.Message{Kind: roomnet.KindSuspect, Epoch: b.epoch(), Subject: "c", SubjectEpoch: c.epoch()})
	if s := a.suspects["c"]; !s.due.Equal(at.Add(refuteWindow)) {
		t.Errorf("due %v, want %v", s.due.Sub(t0), at.Add(refuteWindow).Sub(t0))
	}
}

// left returns the members x dropped in outs.
func left(outs []output) []string {
	var out []string
	for _, o := range outs {
		for _, ev := range o.events {
			if ev.Type == MemberLeft {
				out = append(out, string(ev.Member.Peer))
			}
		}
	}
	return out
}

// refutationOf runs the subject c from at until it publishes its
// refutation of a suspect it was given, and returns it.
func refutationOf(t *testing.T, c *tm, at time.Time, suspect roomnet.Message) (roomnet.Message, time.Time) {
	t.Helper()
	c.deliver(at, accuserOf(c, suspect), suspect)
	times, outs := c.run(at, at.Add(refuteWindow))
	for i, o := range outs {
		for _, m := range o.publish {
			if m.Kind == roomnet.KindHeartbeat {
				if !m.Refute {
					t.Fatalf("c's answer to a suspect is not marked Refute: %+v", m)
				}
				return m, times[i]
			}
		}
	}
	t.Fatal("c did not refute")
	return roomnet.Message{}, time.Time{}
}

// accuserOf is a stand-in for the suspect's author b in suspectRoom (a
// delivery needs only the author's peer ID).
func accuserOf(c *tm, _ roomnet.Message) *tm {
	return &tm{machine: &machine{self: Identity{Peer: "b"}}, t: c.t}
}

// Issue 15, 1: a suspect that the observer receives after the subject's
// refutation (the subject saw it first, answered, and will never see it
// again: pubsub dropped the later copies as duplicates) is void; so are
// bursts of any size, before and after the refutation, from one accuser or
// several. Before the fix the late suspect opened a new window that
// nothing answered, and the observer dropped the live subject.
func TestMachineSuspectBurstsAroundARefutationNeverDropALiveMember(t *testing.T) {
	for _, size := range []int{1, 2, 50, 500} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			a, b, c := suspectRoom(t)
			// More accusers: members d0..d9.
			cfg := testConfig()
			var ds []*tm
			for i := range 10 {
				d := newTM(t, fmt.Sprintf("d%d", i), 1, cfg)
				a.deliver(t0, d, d.heartbeat())
				ds = append(ds, d)
			}
			a.out()
			accuse := func(now time.Time, n int) {
				for i := range n {
					from := b
					if i%2 == 1 {
						from = ds[i%len(ds)]
					}
					a.deliver(now, from, roomnet.Message{Kind: roomnet.KindSuspect, Epoch: from.epoch(), Subject: "c", SubjectEpoch: c.epoch()})
				}
			}
			at := t0.Add(time.Second)
			for _, d := range ds {
				a.deliver(at, d, d.heartbeat()) // alive through the test
			}
			// Before the refutation.
			accuse(at, size)
			suspect := roomnet.Message{Kind: roomnet.KindSuspect, Epoch: b.epoch(), Subject: "c", SubjectEpoch: c.epoch()}
			ref, when := refutationOf(t, c, at, suspect)
			_, outs := a.run(at, when.Add(5*time.Millisecond))
			a.deliver(when.Add(5*time.Millisecond), c, ref)
			// After it: the same burst again, arriving late, and again
			// after half a window, and once more after a full window.
			late := when.Add(10 * time.Millisecond)
			accuse(late, size)
			accuse(late.Add(refuteWindow/2), size)
			accuse(late.Add(2*refuteWindow), size)
			_, more := a.run(late, late.Add(5*refuteWindow))
			outs = append(outs, more...)
			eq(t, "dropped", left(outs), nil)
			eq(t, "members", a.memberIDs(), []string{"a", "b", "c", "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9"})
			if a.stats.suspectsVoid.Load() == 0 {
				t.Errorf("no suspect was voided")
			}
		})
	}
}

// The suspect that reaches the observer only after the refutation, with no
// suspicion open there before (the accuser sent it to the subject first):
// void as well.
func TestMachineSuspectArrivingOnlyAfterTheRefutationIsVoid(t *testing.T) {
	a, b, c := suspectRoom(t)
	at := t0.Add(time.Second)
	suspect := roomnet.Message{Kind: roomnet.KindSuspect, Epoch: b.epoch(), Subject: "c", SubjectEpoch: c.epoch()}
	ref, when := refutationOf(t, c, at, suspect)
	a.deliver(when, c, ref)
	a.deliver(when.Add(300*time.Millisecond), b, suspect)
	_, outs := a.run(when, when.Add(3*refuteWindow))
	eq(t, "dropped", left(outs), nil)
	eq(t, "members", a.memberIDs(), []string{"a", "b", "c"})

	// The hold ends: a suspect long after the refutation counts again
	// (c may have crashed since), from an accuser that is not baseless.
	cfg := testConfig()
	e := newTM(t, "e", 1, cfg)
	later := when.Add(suspectHold + time.Second)
	// Everyone keeps being heard until then (Timeout is 3 s here).
	for at := when.Add(2 * time.Second); at.Before(later); at = at.Add(time.Second) {
		for _, x := range []*tm{b, c, e} {
			a.deliver(at, x, x.heartbeat())
		}
	}
	a.deliver(later.Add(-time.Millisecond), c, c.heartbeat())
	a.deliver(later, e, roomnet.Message{Kind: roomnet.KindSuspect, Epoch: e.epoch(), Subject: "c", SubjectEpoch: c.epoch()})
	_, outs = a.run(later, later.Add(2*refuteWindow))
	eq(t, "dropped after the hold", left(outs), []string{"c"})
}

// A refuted accusation makes its accuser baseless: its suspects about
// anyone are ignored for suspectHold; one accuser holds at most
// maxSuspectsPerAccuser open suspicions.
func TestMachineBaselessAccuserIgnoredAndOpenSuspicionsBounded(t *testing.T) {
	a, b, c := suspectRoom(t)
	cfg := testConfig()
	var ds []*tm
	for i := range maxSuspectsPerAccuser + 2 {
		d := newTM(t, fmt.Sprintf("d%d", i), 1, cfg)
		a.deliver(t0, d, d.heartbeat())
		ds = append(ds, d)
	}
	at := t0.Add(time.Second)
	for _, d := range ds {
		a.deliver(at, b, roomnet.Message{Kind: roomnet.KindSuspect, Epoch: b.epoch(), Subject: d.self.Peer, SubjectEpoch: d.epoch()})
	}
	if n := len(a.suspects); n != maxSuspectsPerAccuser {
		t.Fatalf("%d open suspicions from one accuser, want %d", n, maxSuspectsPerAccuser)
	}
	// Every suspected d answers (a plain heartbeat counts as a sign of life).
	for _, d := range ds {
		a.deliver(at.Add(10*time.Millisecond), d, d.heartbeat())
	}
	_, outs := a.run(at, at.Add(20*time.Millisecond))
	eq(t, "dropped", left(outs), nil)
	// b is now baseless: its accusation of c, which really is silent from
	// here on, is ignored.
	a.deliver(at.Add(100*time.Millisecond), b, roomnet.Message{Kind: roomnet.KindSuspect, Epoch: b.epoch(), Subject: "c", SubjectEpoch: c.epoch()})
	if len(a.suspects) != 0 {
		t.Fatalf("a baseless accuser opened a suspicion: %v", a.suspects)
	}
}

// The subject marks exactly its answer to a suspect as a refutation: the
// next regular heartbeat is not one.
func TestMachineRefutationIsMarkedOnce(t *testing.T) {
	_, b, c := suspectRoom(t)
	at := t0.Add(time.Second)
	_, when := refutationOf(t, c, at, roomnet.Message{Kind: roomnet.KindSuspect, Epoch: b.epoch(), Subject: "c", SubjectEpoch: c.epoch()})
	_, outs := c.run(when.Add(time.Millisecond), when.Add(3*testConfig().HeartbeatInterval))
	n := 0
	for _, o := range outs {
		for _, m := range o.publish {
			if m.Kind == roomnet.KindHeartbeat {
				n++
				if m.Refute {
					t.Errorf("a later heartbeat is marked Refute")
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no later heartbeat")
	}
}
