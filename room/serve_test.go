package room

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

	"github.com/convene-p2p/convene/room/roomnet"
)

// Another peer's Fetch reaches the room as an event (EventFetch) that its
// loop answers: with the room's own state while it is Joined, with a
// refusal once it has left (during the linger), and not at all once it is
// destroyed (the network refuses). The loop never waits on the reply: a
// request whose reply nobody takes does not stall the room.
func TestRoomAnswersFetchEventsOnlyWhileJoined(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		a := newRoom(t, b, "a", shellConfig())
		mustSet(t, a, "k", "v")
		asker := b.join("asker") // a network with no room: it only asks
		defer asker.Close()
		ctx := context.Background()

		rep, err := asker.Fetch(ctx, "a")
		if err != nil {
			t.Fatalf("Fetch of a joined room: %v", err)
		}
		if rep.State.Kind != roomnet.KindHeartbeat || len(rep.State.State) == 0 {
			t.Fatalf("Fetch of a joined room = %+v, want a heartbeat with a's state", rep.State)
		}

		// A reply channel nobody reads and with no buffer: the room drops
		// its answer rather than wait, and goes on (synctest reports a
		// loop blocked for good as a deadlock).
		b.mu.Lock()
		na := b.nets["a"]
		b.mu.Unlock()
		na.push(roomnet.Event{Kind: roomnet.EventFetch, From: "asker", Reply: make(chan roomnet.FetchAnswer)})
		mustSet(t, a, "k", "v2")

		if err := a.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		if s := a.Status(); s != Left {
			t.Fatalf("status after Leave = %v, want %v (lingering)", s, Left)
		}
		if _, err := asker.Fetch(ctx, "a"); err == nil || errors.Is(err, errUnreachable) {
			t.Fatalf("Fetch of a room that left = %v, want a refusal", err)
		}

		_ = a.Close()
		if _, err := asker.Fetch(ctx, "a"); !errors.Is(err, errUnreachable) {
			t.Fatalf("Fetch of a closed room = %v, want unreachable", err)
		}
	})
}
