package gossip

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/room/roomnet"
)

func msgFrom(p string, n int) roomnet.Event {
	return roomnet.Event{Kind: roomnet.EventMessage, From: roomnet.PeerID(p), Msg: roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: uint64(n)}}
}

// drain pops n events from q without blocking.
func drain(t *testing.T, q *queue, n int) []roomnet.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // next returns at once when nothing is ready
	var got []roomnet.Event
	for range n {
		ev, err := q.next(ctx)
		if err != nil {
			t.Fatalf("after %d events: next: %v", len(got), err)
		}
		got = append(got, ev)
	}
	if ev, err := q.next(ctx); err == nil {
		t.Fatalf("queue holds more than %d events: %+v", n, ev)
	}
	return got
}

func eventString(ev roomnet.Event) string {
	from := string(ev.From)
	if len(from) > 8 { // a real peer ID, not a test name
		from = peer.ID(ev.From).String()
	}
	switch ev.Kind {
	case roomnet.EventMessage:
		return fmt.Sprintf("msg %s/%d", from, ev.Msg.Epoch)
	case roomnet.EventPeerUp:
		return fmt.Sprintf("up %s", from)
	case roomnet.EventPeerDown:
		return fmt.Sprintf("down %s", from)
	}
	return "?"
}

func checkOrder(t *testing.T, got []roomnet.Event, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if s := eventString(got[i]); s != want[i] {
			var all []string
			for _, ev := range got {
				all = append(all, eventString(ev))
			}
			t.Fatalf("event %d = %q, want %q (all: %q)", i, s, want[i], all)
		}
	}
}

// Peer events are coalesced per peer (the latest wins), never dropped (not
// even when the message queue is full), and not delayed by other peers'
// messages; messages beyond the bound are dropped.
func TestQueueCoalescesPeerEvents(t *testing.T) {
	q := newQueue(2)
	q.pushPeer("p1", roomnet.EventPeerUp)
	q.pushPeer("p2", roomnet.EventPeerUp)
	q.pushPeer("p1", roomnet.EventPeerDown)
	if !q.pushMessage(msgFrom("p3", 1)) || !q.pushMessage(msgFrom("p4", 1)) {
		t.Fatal("push into a non-full queue failed")
	}
	if q.pushMessage(msgFrom("p5", 1)) {
		t.Fatal("push into a full queue succeeded")
	}
	q.pushPeer("p6", roomnet.EventPeerUp) // the message queue is full
	checkOrder(t, drain(t, q, 5), "up p2", "down p1", "up p6", "msg p3/1", "msg p4/1")

	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.next(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("next on empty queue with cancelled ctx = %v", err)
	}
	q.close()
	if _, err := q.next(context.Background()); !errors.Is(err, roomnet.ErrNetworkClosed) {
		t.Fatalf("next after close = %v", err)
	}
}

// A PeerDown (or PeerUp) comes after every message of the same peer that
// was queued before it, so a goodbye is never overtaken by its author's
// PeerDown; other peers' events are not held back.
func TestQueuePeerDownDoesNotOvertakeQueuedMessages(t *testing.T) {
	q := newQueue(16)
	q.pushPeer("x", roomnet.EventPeerUp)
	q.pushMessage(msgFrom("x", 1))
	q.pushMessage(msgFrom("y", 1))
	q.pushMessage(msgFrom("x", 2)) // x's goodbye
	q.pushPeer("x", roomnet.EventPeerDown)
	q.pushPeer("z", roomnet.EventPeerUp)
	q.pushMessage(msgFrom("x", 3)) // relayed after the hint: may follow it
	checkOrder(t, drain(t, q, 6), "up z", "msg x/1", "msg y/1", "msg x/2", "down x", "msg x/3")

	// Popping in between: the event waits only for what is still queued.
	q.pushMessage(msgFrom("x", 4))
	checkOrder(t, drain(t, q, 1), "msg x/4")
	q.pushPeer("x", roomnet.EventPeerDown)
	q.pushMessage(msgFrom("x", 5))
	checkOrder(t, drain(t, q, 2), "down x", "msg x/5")

	// A dropped message (full queue) holds nothing back.
	q = newQueue(1)
	q.pushMessage(msgFrom("y", 1))
	if q.pushMessage(msgFrom("x", 1)) {
		t.Fatal("push into a full queue succeeded")
	}
	q.pushPeer("x", roomnet.EventPeerDown)
	checkOrder(t, drain(t, q, 2), "down x", "msg y/1")
}

// Random interleavings of pushes and pops against a model: messages come
// out in FIFO order, each peer event is the latest pushed for its peer and
// comes out after every message of that peer queued before that push, and
// no peer event is lost.
func TestQueueOrderProperty(t *testing.T) {
	peers := []string{"a", "b", "c", "d"}
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		size := 1 + rng.IntN(6)
		if seed%2 == 1 {
			size = 1 + rng.IntN(3*minQueueRing) // the ring grows and is released
		}
		pushes := 4 + rng.IntN(4) // of 10 steps push a message, 2 a peer event, the rest pop
		q := newQueue(size)
		var (
			queued    []roomnet.Event                  // model of the message FIFO
			pending   = map[string]roomnet.EventKind{} // latest peer event not yet returned
			mustFirst = map[string]int{}               // per peer: messages (by serial) to return before its event
			serial    int
			returned  = map[int]bool{}
		)
		check := func(ev roomnet.Event) {
			t.Helper()
			p := string(ev.From)
			switch ev.Kind {
			case roomnet.EventMessage:
				if len(queued) == 0 || queued[0].Msg.Epoch != ev.Msg.Epoch {
					t.Fatalf("seed %d: message %s out of FIFO order", seed, eventString(ev))
				}
				queued = queued[1:]
				returned[int(ev.Msg.Epoch)] = true
			default:
				kind, ok := pending[p]
				if !ok || kind != ev.Kind {
					t.Fatalf("seed %d: %s, want pending %v (ok %v)", seed, eventString(ev), kind, ok)
				}
				if last := mustFirst[p]; last > 0 && !returned[last] {
					t.Fatalf("seed %d: %s overtook message %d of that peer", seed, eventString(ev), last)
				}
				delete(pending, p)
			}
		}
		for range 300 {
			p := peers[rng.IntN(len(peers))]
			switch r := rng.IntN(10); {
			case r < pushes:
				serial++
				ev := msgFrom(p, serial)
				if q.pushMessage(ev) {
					if len(queued) == size {
						t.Fatalf("seed %d: push beyond the bound accepted", seed)
					}
					queued = append(queued, ev)
				} else if len(queued) < size {
					t.Fatalf("seed %d: push into a non-full queue refused", seed)
				}
			case r < pushes+2:
				kind := roomnet.EventPeerUp
				if rng.IntN(2) == 0 {
					kind = roomnet.EventPeerDown
				}
				q.pushPeer(peer.ID(p), kind)
				pending[p] = kind
				mustFirst[p] = 0
				for _, ev := range queued {
					if string(ev.From) == p {
						mustFirst[p] = int(ev.Msg.Epoch)
					}
				}
			default:
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				ev, err := q.next(ctx)
				if err != nil {
					if len(queued) > 0 || len(pending) > 0 {
						t.Fatalf("seed %d: next failed with %d messages and %d peer events pending: %v", seed, len(queued), len(pending), err)
					}
					continue
				}
				check(ev)
			}
			if len(q.msgs) > size {
				t.Fatalf("seed %d: ring of %d slots for a bound of %d", seed, len(q.msgs), size)
			}
		}
		for len(queued) > 0 || len(pending) > 0 {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			ev, err := q.next(ctx)
			if err != nil {
				t.Fatalf("seed %d: drain: %v with %d messages and %d peer events pending", seed, err, len(queued), len(pending))
			}
			check(ev)
		}
	}
}

// BenchmarkNewQueue reports what an idle room's queue costs (B/op).
func BenchmarkNewQueue(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		newQueue(DefaultQueueSize)
	}
}

// popN pops n events from q without blocking; more may remain.
func popN(t *testing.T, q *queue, n int) []roomnet.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var got []roomnet.Event
	for range n {
		ev, err := q.next(ctx)
		if err != nil {
			t.Fatalf("after %d events: next: %v", len(got), err)
		}
		got = append(got, ev)
	}
	return got
}

// abMsg is message i, from a if i is odd, else from b.
func abMsg(i int) roomnet.Event {
	if i%2 == 1 {
		return msgFrom("a", i)
	}
	return msgFrom("b", i)
}

// The ring starts empty, grows when full (here from a wrapped-around state)
// keeping FIFO order and the place of pending peer events, stops growing at
// the bound, clears popped slots and is released once a burst drains.
func TestQueueGrowsInOrder(t *testing.T) {
	q := newQueue(40)
	if q.msgs != nil {
		t.Fatalf("new queue holds a ring of %d slots", len(q.msgs))
	}
	for i := 1; i <= 10; i++ {
		q.pushMessage(abMsg(i))
	}
	checkOrder(t, popN(t, q, 6), "msg a/1", "msg b/2", "msg a/3", "msg b/4", "msg a/5", "msg b/6")
	if len(q.msgs) != minQueueRing {
		t.Fatalf("ring of %d slots, want %d", len(q.msgs), minQueueRing)
	}
	for i := range 6 {
		if !reflect.ValueOf(q.msgs[i]).IsZero() {
			t.Fatalf("popped slot %d not cleared: %+v", i, q.msgs[i])
		}
	}
	for i := 11; i <= 22; i++ { // fills the ring, wrapping around
		q.pushMessage(abMsg(i))
	}
	if q.n != len(q.msgs) || q.head == 0 {
		t.Fatalf("ring not full and wrapped: head %d, n %d, len %d", q.head, q.n, len(q.msgs))
	}
	q.pushPeer("a", roomnet.EventPeerDown) // after a/21
	q.pushPeer("c", roomnet.EventPeerUp)   // at once
	q.pushMessage(abMsg(23))
	if len(q.msgs) != 2*minQueueRing || q.head != 0 {
		t.Fatalf("after growing: ring of %d slots, head %d; want %d, 0", len(q.msgs), q.head, 2*minQueueRing)
	}
	for i := 24; i <= 40+6; i++ {
		if !q.pushMessage(abMsg(i)) {
			t.Fatalf("push of message %d (%d queued, bound 40) refused", i, q.n)
		}
	}
	if len(q.msgs) != 40 {
		t.Fatalf("full ring of %d slots, want the bound 40", len(q.msgs))
	}
	if q.pushMessage(abMsg(47)) {
		t.Fatal("push beyond the bound accepted")
	}
	want := []string{"up c"}
	for i := 7; i <= 46; i++ {
		want = append(want, eventString(abMsg(i)))
		if i == 21 {
			want = append(want, "down a")
		}
	}
	checkOrder(t, drain(t, q, len(want)), want...)
	if q.msgs != nil {
		t.Fatalf("drained queue still holds a ring of %d slots", len(q.msgs))
	}

	// A trickle keeps the first ring instead of reallocating it.
	q.pushMessage(abMsg(48))
	drain(t, q, 1)
	if len(q.msgs) != minQueueRing {
		t.Fatalf("ring of %d slots after a trickle, want %d", len(q.msgs), minQueueRing)
	}
}

// Exactly size messages fit whatever the size relative to the growth steps;
// the next is dropped.
func TestQueueBound(t *testing.T) {
	for _, size := range []int{1, 5, minQueueRing, minQueueRing + 1, 100, DefaultQueueSize} {
		q := newQueue(size)
		var want []string
		for i := 1; i <= size; i++ {
			if !q.pushMessage(abMsg(i)) {
				t.Fatalf("size %d: push %d refused", size, i)
			}
			want = append(want, eventString(abMsg(i)))
		}
		if q.pushMessage(abMsg(size + 1)) {
			t.Fatalf("size %d: push beyond the bound accepted", size)
		}
		if len(q.msgs) != size {
			t.Fatalf("size %d: full ring of %d slots", size, len(q.msgs))
		}
		checkOrder(t, drain(t, q, size), want...)
	}
}
