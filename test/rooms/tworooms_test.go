package rooms_test

import (
	"context"
	"testing"

	pubsub "github.com/libp2p/go-libp2p-pubsub"

	"github.com/convene-p2p/convene/gossip"
	"github.com/convene-p2p/convene/room"
	tn "github.com/convene-p2p/convene/test/internal/testnet"
)

// A and B are in rooms "one" and "two", C only in "one"; all three are
// connected. A's presence differs per room, and each room shows only its
// own value, at A and at B. C's host never receives a single message of
// room "two" (counted by a pubsub tracer before any validation), while it
// receives room "one" traffic.
func TestPeerInTwoRoomsHasSeparatePresenceAndOthersSeeOnlyTheirRoom(t *testing.T) {
	a := tn.Loopback(t, tn.Config("A"))
	b := tn.Loopback(t, tn.Config("B"))
	tracer := &tn.Tracer{}
	cfgC := tn.Config("C")
	cfgC.Gossip.Options = []pubsub.Option{pubsub.WithRawTracer(tracer)}
	c := tn.Loopback(t, cfgC)

	a1, a2 := tn.Join(t, a, "one"), tn.Join(t, a, "two")
	b1, b2 := tn.Join(t, b, "one"), tn.Join(t, b, "two")
	c1 := tn.Join(t, c, "one")
	recB2 := tn.RecordRoom(t, b2)
	recA2 := tn.RecordRoom(t, a2)
	tn.ConnectAll(t, tn.Hosts(a, b, c)...)

	if err := a1.SetJSON("cursor", map[string]int{"x": 1}); err != nil {
		t.Fatal(err)
	}
	if err := a2.SetJSON("cursor", map[string]int{"x": 2}); err != nil {
		t.Fatal(err)
	}
	if err := b2.SetJSON("status", "busy in two"); err != nil {
		t.Fatal(err)
	}

	cursorX := func(rm *room.Room, p room.PeerID) int {
		var v struct{ X int }
		if ok, err := rm.GetJSON(p, "cursor", &v); !ok || err != nil {
			return -1
		}
		return v.X
	}
	pa := tn.Peer(a)
	tn.Eventually(t, tn.Wait, "B sees A's cursor 1 in room one", func() bool { return cursorX(b1, pa) == 1 })
	tn.Eventually(t, tn.Wait, "B sees A's cursor 2 in room two", func() bool { return cursorX(b2, pa) == 2 })
	tn.Eventually(t, tn.Wait, "C sees A's cursor 1 in room one", func() bool { return cursorX(c1, pa) == 1 })
	tn.Eventually(t, tn.Wait, "A sees B's status in room two", func() bool { _, ok := a2.Get(tn.Peer(b), "status"); return ok })
	if x := cursorX(a1, pa); x != 1 {
		t.Errorf("A's own cursor in room one = %d, want 1", x)
	}
	if x := cursorX(a2, pa); x != 2 {
		t.Errorf("A's own cursor in room two = %d, want 2", x)
	}
	if _, ok := b1.Get(tn.Peer(b), "status"); ok {
		t.Errorf("B's room-two status leaked into B's room one")
	}
	if _, ok := a1.Get(tn.Peer(b), "status"); ok {
		t.Errorf("B's room-two status appears in A's room one")
	}
	if _, ok := c1.Get(tn.Peer(b), "status"); ok {
		t.Errorf("B's room-two status appears in C's room one")
	}

	// Traffic after everyone is connected goes over GossipSub (the first
	// values may have come with the join snapshot, over direct streams):
	// new values in both rooms, and a broadcast each way in room two.
	if err := a1.SetJSON("cursor", map[string]int{"x": 11}); err != nil {
		t.Fatal(err)
	}
	if err := a2.SetJSON("cursor", map[string]int{"x": 22}); err != nil {
		t.Fatal(err)
	}
	tn.Eventually(t, tn.Wait, "C sees A's cursor 11 in room one", func() bool { return cursorX(c1, pa) == 11 })
	tn.Eventually(t, tn.Wait, "B sees A's cursor 22 in room two", func() bool { return cursorX(b2, pa) == 22 })
	tn.Eventually(t, tn.Wait, "B sees A's cursor 11 in room one", func() bool { return cursorX(b1, pa) == 11 })
	if err := a2.Broadcast(context.Background(), []byte("only for two")); err != nil {
		t.Fatal(err)
	}
	if err := b2.Broadcast(context.Background(), []byte("only for two, too")); err != nil {
		t.Fatal(err)
	}
	recB2.WaitFor(t, tn.Wait, "A's broadcast at B", func(ev room.Event) bool {
		return ev.Type == room.Broadcast && string(ev.Payload) == "only for two"
	})
	recA2.WaitFor(t, tn.Wait, "B's broadcast at A", func(ev room.Event) bool {
		return ev.Type == room.Broadcast && string(ev.Payload) == "only for two, too"
	})

	for _, m := range c1.Members() {
		if s := c1.State(m.Peer); s["status"] != nil {
			t.Errorf("C's room one holds a room-two key for %s", tn.Short(m.Peer))
		}
	}
	if got := tracer.Received(gossip.TopicName("two")); got != 0 {
		t.Errorf("C received %d messages of room two, want 0", got)
	}
	if got := tracer.Received(gossip.TopicName("one")); got == 0 {
		t.Errorf("C received no message of room one: the tracer sees nothing")
	}
	t.Logf("C received %d messages of room one, %d of room two",
		tracer.Received(gossip.TopicName("one")), tracer.Received(gossip.TopicName("two")))
}
