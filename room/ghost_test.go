package room

import (
	"errors"
	"testing"
	"time"

	"github.com/convene-p2p/convene/room/roomnet"
)

// Issue 16.2: ghosts brought back by relays. c crashed; a still relays c's
// last signed heartbeat in its Fetch replies (or did, before it dropped
// it). A member x that dropped c's incarnation — by its own failed probe,
// by a suspicion, or by silence — fetches a's snapshot (a newcomer's
// would do the same) and must not readmit c; only c itself (a fresh
// message of the same epoch after a timeout, or a new epoch) may.
func TestMachineRelayNeverReadmitsADroppedIncarnation(t *testing.T) {
	cfg := testConfig()
	for _, tc := range []struct {
		name string
		drop func(x *tm, c *tm, now time.Time) time.Time // drops c at x; returns when it is gone
	}{
		{"failed probe", func(x, c *tm, now time.Time) time.Time {
			x.peerDown(now, "c")
			x.fetched(now, x.out().fetches[0], roomnet.FetchReply{}, errors.New("connection refused"))
			x.tick(now.Add(cfg.restartGrace()))
			return now.Add(cfg.restartGrace())
		}},
		{"suspicion", func(x, c *tm, now time.Time) time.Time {
			x.receive(now, "b", roomnet.Message{Kind: roomnet.KindSuspect, Epoch: 1, Subject: "c", SubjectEpoch: c.epoch()}, nil)
			x.tick(now.Add(refuteWindow))
			return now.Add(refuteWindow)
		}},
		{"timeout", func(x, c *tm, now time.Time) time.Time {
			at := t0.Add(cfg.Timeout) // c last heard at t0
			x.tick(at)
			return at
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSigner()
			a, b, c, x := newTM(t, "a", 1, cfg), newTM(t, "b", 1, cfg), newTM(t, "c", 1, cfg), newTM(t, "x", 1, cfg)
			c.mustSet(t0, "cursor", "1")
			c.out()
			for _, m := range []*tm{a, x} {
				m.out()
				s.deliver(m, t0, c, c.heartbeat())
				s.deliver(m, t0, b, b.heartbeat())
				m.out()
			}
			// a's reply, taken while a still held c.
			reply := s.reply(t, a)
			if !relaysIn(reply, "c") {
				t.Fatalf("a does not relay c: %+v", reply.Relayed)
			}
			// b keeps talking, so that only c goes.
			now := t0.Add(time.Second)
			s.deliver(x, now, b, b.heartbeat())
			gone := tc.drop(x, c, now)
			if o := s.deliver(x, gone, b, b.heartbeat()); !hasEvent(o.events, MemberLeft, "c") {
				t.Fatalf("x did not drop c: %q", describe(o.events))
			}
			// The relay arrives through a's reply: a snapshot fetch (a
			// newcomer's, or x's own after a PeerUp of a), just after and
			// well after the quarantine.
			for _, at := range []time.Duration{time.Millisecond, 2 * cfg.quarantine()} {
				x.fetched(gone.Add(at), fetchRequest{peer: "a", purpose: fetchSnapshot, started: gone}, reply, nil)
				if o := x.out(); hasEvent(o.events, MemberJoined, "c") {
					t.Fatalf("a relay readmitted c %v after it was dropped: %q", at, describe(o.events))
				}
			}
			eq(t, "members", x.memberIDs(), []string{"a", "b", "x"})
			// A new incarnation of c, even relayed, is admitted.
			c2 := newTM(t, "c", 2, cfg)
			c2.out()
			s.deliver(a, gone, c2, c2.heartbeat())
			x.fetched(gone.Add(3*cfg.quarantine()), fetchRequest{peer: "a", purpose: fetchSnapshot, started: gone}, s.reply(t, a), nil)
			if o := x.out(); !hasEvent(o.events, MemberJoined, "c") {
				t.Fatalf("a relayed new incarnation was not admitted: %q", describe(o.events))
			}
		})
	}
}

// What a relay proves about liveness is bounded by its age. A member
// relays only members it heard from within relayMaxAge (and none it is
// about to drop); a newcomer counts a relayed member as heard relayMaxAge
// before receipt, and a relay of a member it knows as no sign of life. So
// a chain of newcomers, each fetching the previous one, drops a crashed
// member within Timeout of its last message everywhere.
func TestMachineRelayLivenessIsBoundedByItsAge(t *testing.T) {
	cfg := testConfig()
	age := cfg.relayMaxAge()
	s := newSigner()
	a, c := newTM(t, "a", 1, cfg), newTM(t, "c", 1, cfg)
	a.out()
	c.out()
	s.deliver(a, t0, c, c.heartbeat()) // c's last message; then it dies

	// a serves c while it heard c less than the age bound ago, not after.
	s.now = t0.Add(age - time.Millisecond)
	reply := s.reply(t, a)
	if !relaysIn(reply, "c") {
		t.Fatalf("a does not relay c heard %v ago", age-time.Millisecond)
	}
	s.now = t0.Add(age)
	if relaysIn(s.reply(t, a), "c") {
		t.Fatalf("a relays c heard %v ago (bound %v)", age, age)
	}

	// A newcomer admitted c from a relay received at t0+age: heard at t0
	// at the latest, so it is dropped at t0+Timeout, and not relayed on.
	n := newTM(t, "n", 1, cfg)
	n.out()
	n.fetched(t0.Add(age), fetchRequest{peer: "a", purpose: fetchSnapshot, started: t0}, reply, nil)
	if o := n.out(); !hasEvent(o.events, MemberJoined, "c") {
		t.Fatalf("the newcomer did not admit c: %q", describe(o.events))
	}
	if got, _ := n.serve(t0.Add(age)); relaysServed(got, s, "c") {
		t.Errorf("the newcomer relays a member it knows only from a relay")
	}
	// More relays of c (other newcomers' fetches) do not extend it.
	n.fetched(t0.Add(cfg.Timeout-time.Millisecond), fetchRequest{peer: "a", purpose: fetchSnapshot, started: t0}, reply, nil)
	n.out()
	n.tick(t0.Add(cfg.Timeout - time.Millisecond))
	if o := n.out(); hasEvent(o.events, MemberLeft, "c") {
		t.Fatalf("c dropped before its timeout")
	}
	n.tick(t0.Add(cfg.Timeout))
	if o := n.out(); !hasEvent(o.events, MemberLeft, "c") {
		t.Fatalf("c not dropped at t0+Timeout: %q (members %v)", describe(o.events), n.memberIDs())
	}

	// A member a is about to drop (its probe failed) is not relayed.
	s.deliver(a, t0.Add(time.Second), c, c.heartbeat())
	a.peerDown(t0.Add(time.Second), "c")
	a.fetched(t0.Add(time.Second), a.out().fetches[0], roomnet.FetchReply{}, errors.New("refused"))
	s.now = t0.Add(time.Second)
	if relaysIn(s.reply(t, a), "c") {
		t.Errorf("a relays c during its restart grace after a failed probe")
	}
}

func relaysIn(r roomnet.FetchReply, p PeerID) bool {
	for _, ev := range r.Relayed {
		if ev.From == p {
			return true
		}
	}
	return false
}

func relaysServed(sv roomnet.Served, s *signer, p PeerID) bool {
	for _, tok := range sv.Relayed {
		if ev, ok := s.msgs[string(tok)]; ok && ev.From == p {
			return true
		}
	}
	return false
}

func hasEvent(evs []Event, typ EventType, p PeerID) bool {
	for _, ev := range evs {
		if ev.Type == typ && ev.Member.Peer == p {
			return true
		}
	}
	return false
}
