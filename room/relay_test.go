package room

import (
	"fmt"
	"testing"
	"time"

	"github.com/convene-p2p/convene/room/roomnet"
)

// signer stands in for the network's signatures in machine tests: every
// message it signs gets a unique opaque token, which open maps back to
// the message and its author.
type signer struct {
	msgs map[string]roomnet.Event
	now  time.Time // of the latest delivery: when reply asks for roomnet.Served
}

func newSigner() *signer { return &signer{msgs: make(map[string]roomnet.Event)} }

// deliver hands msgs, authored by from and signed, to x at now.
func (s *signer) deliver(x *tm, now time.Time, from *tm, msgs ...roomnet.Message) output {
	s.now = now
	for _, msg := range msgs {
		tok := fmt.Appendf(nil, "sig-%d", len(s.msgs))
		s.msgs[string(tok)] = roomnet.Event{Kind: roomnet.EventMessage, From: from.self.Peer, Msg: msg, Signed: tok}
		x.receive(now, from.self.Peer, msg, tok)
	}
	return x.take()
}

// reply is the roomnet.FetchReply the network would build from x's roomnet.Served.
func (s *signer) reply(t *testing.T, x *tm) roomnet.FetchReply {
	t.Helper()
	served, ok := x.serve(s.now)
	if !ok {
		t.Fatal("served refused")
	}
	r := roomnet.FetchReply{State: served.State}
	for _, tok := range served.Relayed {
		ev, ok := s.msgs[string(tok)]
		if !ok {
			t.Fatalf("relayed an unknown message %q", tok)
		}
		r.Relayed = append(r.Relayed, ev)
	}
	return r
}

// relayed describes what x relays: "b:heartbeat(cursor,name)" per message,
// identity records first.
func (s *signer) relayed(t *testing.T, x *tm) []string {
	t.Helper()
	var out []string
	for _, ev := range s.reply(t, x).Relayed {
		out = append(out, fmt.Sprintf("%s:%v %s", string(ev.From), ev.Msg.Kind, ev.Signed))
	}
	return out
}

// A member keeps, per remote member, the latest hello/heartbeat and every
// later message that still holds the newest value of some key, no more:
// a newer delta for the same key replaces the older one, and a heartbeat
// that adds nothing only takes over the identity.
func TestMachineKeepsMinimalRelaySetPerMember(t *testing.T) {
	cfg := testConfig()
	a := newTM(t, "a", 1, cfg)
	b := newTM(t, "b", 1, cfg)
	s := newSigner()
	a.out()
	b.mustSet(t0, "x", "1")
	b.mustSet(t0, "y", "1")
	b.out()
	s.deliver(a, t0, b, b.heartbeat()) // sig-0: x, y, identity
	eq(t, "after heartbeat", s.relayed(t, a), []string{"b:heartbeat sig-0"})

	now := t0.Add(100 * time.Millisecond)
	b.mustSet(now, "x", "2")
	s.deliver(a, now, b, b.out().publish...) // sig-1: x
	eq(t, "after delta x", s.relayed(t, a), []string{"b:heartbeat sig-0", "b:delta sig-1"})

	now = now.Add(100 * time.Millisecond)
	b.mustSet(now, "x", "3")
	s.deliver(a, now, b, b.out().publish...) // sig-2: x, replaces sig-1
	eq(t, "after second delta x", s.relayed(t, a), []string{"b:heartbeat sig-0", "b:delta sig-2"})

	now = now.Add(100 * time.Millisecond)
	b.mustSet(now, "y", "2")
	s.deliver(a, now, b, b.out().publish...) // sig-3: y; sig-0 now holds only the identity
	eq(t, "after delta y", s.relayed(t, a), []string{"b:heartbeat sig-0", "b:delta sig-2", "b:delta sig-3"})

	// A duplicate or stale delta holds nothing new.
	s.deliver(a, now, b, s.msgs["sig-1"].Msg)
	eq(t, "after a stale delta", s.relayed(t, a), []string{"b:heartbeat sig-0", "b:delta sig-2", "b:delta sig-3"})

	// A heartbeat with nothing new takes over the identity; sig-0 holds
	// nothing any more and goes.
	now = now.Add(time.Second)
	s.deliver(a, now, b, b.heartbeat()) // sig-5
	eq(t, "after an idle heartbeat", s.relayed(t, a), []string{"b:heartbeat sig-5", "b:delta sig-2", "b:delta sig-3"})

	// A new incarnation replaces everything of the old one.
	b2 := newTM(t, "b", 2, cfg)
	b2.mustSet(now, "z", "1")
	b2.out()
	s.deliver(a, now, b2, b2.heartbeat()) // sig-6
	eq(t, "after a restart", s.relayed(t, a), []string{"b:heartbeat sig-6"})

	// A member that leaves is no longer relayed.
	s.deliver(a, now, b2, roomnet.Message{Kind: roomnet.KindLeave, Epoch: 2})
	eq(t, "after leave", s.relayed(t, a), nil)
}

// A newcomer connected to a single member learns every other member —
// identity and newest state — from that member's fetch reply, verified
// per author: no answer to its hello is needed, and it neither answers
// them nor fetches them (they are not its neighbours).
func TestMachineJoinSnapshotIncludesRelayedMembers(t *testing.T) {
	cfg := testConfig()
	s := newSigner()
	a := newTM(t, "a", 1, cfg)
	members := []*tm{newTM(t, "b", 1, cfg), newTM(t, "c", 1, cfg), newTM(t, "d", 1, cfg)}
	a.out()
	for i, m := range members {
		m.mustSet(t0, "cursor", fmt.Sprint(i))
		m.out()
		s.deliver(a, t0, m, m.heartbeat())
		m.mustSet(t0.Add(time.Second), "cursor", fmt.Sprint(10+i))
		s.deliver(a, t0.Add(time.Second), m, m.out().publish...)
	}
	a.out()

	now := t0.Add(2 * time.Second)
	n := newTM(t, "n", 1, cfg)
	n.out()
	n.peerUp(now, "a")
	o := n.out()
	if len(o.fetches) != 1 {
		t.Fatalf("fetches = %+v", o.fetches)
	}
	n.fetched(now.Add(time.Millisecond), o.fetches[0], s.reply(t, a), nil)
	o = n.out()
	eq(t, "members", n.memberIDs(), []string{"a", "b", "c", "d", "n"})
	for i, m := range members {
		p := string(m.self.Peer)
		if got := n.state(p)["cursor"]; got != fmt.Sprint(10+i) {
			t.Errorf("%s's cursor at the newcomer = %q, want the newest %d", p, got, 10+i)
		}
		for _, id := range n.view(nil).members {
			if string(id.Peer) == p && id.Name != m.self.Name {
				t.Errorf("%s named %q, want %q", p, id.Name, m.self.Name)
			}
		}
	}
	if len(o.fetches) != 0 {
		t.Errorf("newcomer fetches relayed members: %+v", o.fetches)
	}
	// No early answer is scheduled for relayed members.
	if n.answerAt.isSet() {
		t.Errorf("newcomer schedules an answer at %v", n.answerAt.at.Sub(now))
	}

	// A probe's reply relays nothing: relays only count for the snapshot.
	n2 := newTM(t, "n2", 1, cfg)
	n2.out()
	n2.fetched(now, fetchRequest{peer: "a", purpose: fetchProbe, started: now}, s.reply(t, a), nil)
	eq(t, "members after a probe reply", n2.memberIDs(), []string{"a", "n2"})

	// The newcomer relays what it was relayed.
	if got := len(s.relayed(t, n)); got != 6 {
		t.Errorf("newcomer relays %d messages, want 6 (3 members × heartbeat + delta)", got)
	}
}

// A relayed message cannot bring back a member the newcomer saw leave,
// nor an older incarnation of one.
func TestMachineRelayedMessagesObeyGoneRecords(t *testing.T) {
	cfg := testConfig()
	s := newSigner()
	a := newTM(t, "a", 1, cfg)
	b := newTM(t, "b", 1, cfg)
	n := newTM(t, "n", 1, cfg)
	a.out()
	n.out()
	s.deliver(a, t0, b, b.heartbeat())
	reply := s.reply(t, a)
	// n saw b leave (this incarnation) before its fetch of a completed.
	n.receive(t0, "b", roomnet.Message{Kind: roomnet.KindLeave, Epoch: 1}, nil)
	n.out()
	n.fetched(t0.Add(time.Millisecond), fetchRequest{peer: "a", purpose: fetchSnapshot, started: t0}, reply, nil)
	eq(t, "members", n.memberIDs(), []string{"a", "n"})
}

// A newcomer's hello carries the digest of the members it knows. After
// its join snapshot (fetched from one member, with everyone relayed), its
// hello matches every member's own digest, and nobody answers it: a join
// costs O(N) messages. A newcomer that knows less (its hello before any
// fetch) is answered, as before.
func TestMachineHelloWithCompleteViewIsNotAnswered(t *testing.T) {
	cfg := testConfig()
	s := newSigner()
	ms := []*tm{newTM(t, "a", 1, cfg), newTM(t, "b", 1, cfg), newTM(t, "c", 1, cfg), newTM(t, "d", 1, cfg)}
	for _, x := range ms {
		x.out()
	}
	for _, x := range ms {
		for _, y := range ms {
			if x != y {
				s.deliver(x, t0, y, y.heartbeat())
			}
		}
		x.out()
		x.answerAt.clear() // the answers among the members themselves are not the point here
	}
	a, b := ms[0], ms[1]
	if a.digest != roomnet.ViewDigest("a", "b", "c", "d") || b.digest != a.digest {
		t.Fatalf("digests %x, %x; want roomnet.ViewDigest of the four members %x", a.digest, b.digest, roomnet.ViewDigest("a", "b", "c", "d"))
	}

	now := t0.Add(time.Second)
	n := newTM(t, "n", 1, cfg)
	join := n.out().publish[0]
	if join.Kind != roomnet.KindHello || join.View != roomnet.ViewDigest("n") {
		t.Fatalf("join hello %+v, want View = roomnet.ViewDigest(n)", join)
	}
	n.peerUp(now, "a")
	n.fetched(now.Add(time.Millisecond), n.out().fetches[0], s.reply(t, a), nil)
	n.out()
	times, outs := n.run(now, now.Add(cfg.PublishInterval))
	var hello *roomnet.Message
	for _, o := range outs {
		for i := range o.publish {
			if o.publish[i].Kind == roomnet.KindHello {
				hello = &o.publish[i]
			}
		}
	}
	if hello == nil {
		t.Fatalf("no hello after the first PeerUp (ran until %v)", times)
	}
	if want := roomnet.ViewDigest("a", "b", "c", "d", "n"); hello.View != want {
		t.Fatalf("hello View %x, want %x", hello.View, want)
	}
	for _, x := range ms {
		x.deliver(now.Add(60*time.Millisecond), n, *hello)
		if x.answerAt.isSet() {
			t.Errorf("%s answers a newcomer whose view matches its own", x.self.Peer)
		}
	}

	// A newcomer that has seen nobody yet (its hello at join) is answered.
	n2 := newTM(t, "n2", 1, cfg)
	b.deliver(now.Add(100*time.Millisecond), n2, n2.out().publish...)
	if !b.answerAt.isSet() {
		t.Error("b does not answer a newcomer that knows nobody")
	}

	// The digest follows removals.
	b.deliver(now.Add(200*time.Millisecond), ms[2], roomnet.Message{Kind: roomnet.KindLeave, Epoch: 1})
	if want := roomnet.ViewDigest("a", "b", "d", "n", "n2"); b.digest != want {
		t.Errorf("digest after c left %x, want %x", b.digest, want)
	}
}
