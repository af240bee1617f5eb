package gossip

import (
	"context"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/room/roomnet"
)

// queue buffers a Topic's inbound events between its reader goroutines and
// Next. Messages go into a bounded FIFO (full: the new message is dropped);
// peer events are coalesced per peer (the latest kind wins), so they are
// bounded by the number of peers and never dropped. Pushing never blocks.
//
// Order: messages come out in the order they were pushed. A peer event
// comes out after every message from the same peer that was queued before
// it (so a PeerDown never overtakes that peer's goodbye), and otherwise
// ahead of queued messages (a PeerUp is not delayed by other peers'
// backlog). When a peer event replaces a pending one, it takes the new
// event's place: after every message of that peer queued so far.
//
// Fetch requests (EventFetch) are kept apart, never dropped (the Fetch
// handlers' concurrency bound bounds them) and come out first, ahead of
// everything else: the peer asking waits for the answer.
//
// Memory: the ring starts empty, doubles when full up to size, and is
// released when it drains from more than minQueueRing slots, so an idle
// room holds no ring and a burst does not pin its peak.
type queue struct {
	mu      sync.Mutex
	closed  bool
	size    int             // bound on queued messages
	msgs    []roomnet.Event // ring buffer, len(msgs) <= size
	head, n int
	// popped counts the messages handed out so far: the message at ring
	// position i (0 = head) has sequence number popped+i.
	popped uint64
	// lastMsg is, per author with messages in the ring, 1 + the sequence
	// number of its latest queued message.
	lastMsg map[roomnet.PeerID]uint64
	peers   []peer.ID // peers with a pending event, oldest first
	pending map[peer.ID]peerEvent
	fetches []roomnet.Event // EventFetch requests, oldest first
	wake    chan struct{}   // capacity 1
	done    chan struct{}   // closed by close
}

// peerEvent is a pending transport event: returned once popped >= after,
// i.e. once the peer's messages queued before it have been returned.
type peerEvent struct {
	kind  roomnet.EventKind
	after uint64
}

// minQueueRing is the ring's first allocation, and the largest one kept
// once the ring drains (a trickle of messages does not reallocate).
const minQueueRing = 16

func newQueue(size int) *queue {
	return &queue{
		size:    size,
		lastMsg: make(map[roomnet.PeerID]uint64),
		pending: make(map[peer.ID]peerEvent),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pushMessage appends ev; it returns false if the queue is full (ev dropped).
func (q *queue) pushMessage(ev roomnet.Event) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return true
	}
	if q.n == q.size {
		return false
	}
	if q.n == len(q.msgs) {
		q.grow()
	}
	q.msgs[(q.head+q.n)%len(q.msgs)] = ev
	q.n++
	q.lastMsg[ev.From] = q.popped + uint64(q.n)
	q.signal()
	return true
}

// grow doubles the full ring (at least minQueueRing, at most size slots),
// copying it in logical order with head at 0; sequence numbers count from
// head, so popped and lastMsg stay valid.
func (q *queue) grow() {
	msgs := make([]roomnet.Event, min(max(2*len(q.msgs), minQueueRing), q.size))
	k := copy(msgs, q.msgs[q.head:])
	copy(msgs[k:], q.msgs[:q.head])
	q.msgs, q.head = msgs, 0
}

// pushPeer records the latest transport event for p, to be returned after
// p's messages queued so far.
func (q *queue) pushPeer(p peer.ID, kind roomnet.EventKind) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if _, ok := q.pending[p]; ok {
		q.peers = slices.DeleteFunc(q.peers, func(x peer.ID) bool { return x == p })
	}
	q.peers = append(q.peers, p)
	q.pending[p] = peerEvent{kind: kind, after: q.lastMsg[roomnet.PeerID(p)]}
	q.signal()
}

// pushFetch appends a Fetch request; it returns false once the queue is
// closed (nobody will answer it).
func (q *queue) pushFetch(ev roomnet.Event) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.fetches = append(q.fetches, ev)
	q.signal()
	return true
}

// dropFetch removes the Fetch request that answers into reply, if it is
// still queued.
func (q *queue) dropFetch(reply chan roomnet.FetchAnswer) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.fetches = slices.DeleteFunc(q.fetches, func(ev roomnet.Event) bool { return ev.Reply == reply })
}

// more reports whether an event is queued.
func (q *queue) more() bool { return q.n > 0 || len(q.peers) > 0 || len(q.fetches) > 0 }

// popLocked returns the next event: the oldest Fetch request, else the
// oldest pending peer event whose peer has no earlier message left in the
// ring, else the oldest message. A pending peer event that must wait
// always has a message ahead of it, so an empty ring means every pending
// peer event is ready.
func (q *queue) popLocked() (roomnet.Event, bool) {
	if len(q.fetches) > 0 {
		ev := q.fetches[0]
		q.fetches[0] = roomnet.Event{}
		q.fetches = q.fetches[1:]
		if len(q.fetches) == 0 {
			q.fetches = nil
		}
		return ev, true
	}
	for i, p := range q.peers {
		pe := q.pending[p]
		if pe.after > q.popped {
			continue
		}
		q.peers = slices.Delete(q.peers, i, i+1)
		delete(q.pending, p)
		return roomnet.Event{Kind: pe.kind, From: roomnet.PeerID(p)}, true
	}
	if q.n > 0 {
		ev := q.msgs[q.head]
		q.msgs[q.head] = roomnet.Event{}
		q.head = (q.head + 1) % len(q.msgs)
		q.n--
		q.popped++
		if q.n == 0 && len(q.msgs) > minQueueRing {
			q.msgs, q.head = nil, 0 // drained after a burst: release the ring
		}
		if q.lastMsg[ev.From] == q.popped {
			delete(q.lastMsg, ev.From) // its last queued message
		}
		return ev, true
	}
	return roomnet.Event{}, false
}

// tryNext returns the next event without waiting (ok false: none queued).
// When it returns an event and more are queued, wake is signalled again.
func (q *queue) tryNext() (roomnet.Event, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return roomnet.Event{}, false, roomnet.ErrNetworkClosed
	}
	ev, ok := q.popLocked()
	if ok && q.more() {
		q.signal()
	}
	return ev, ok, nil
}

func (q *queue) next(ctx context.Context) (roomnet.Event, error) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return roomnet.Event{}, roomnet.ErrNetworkClosed
		}
		ev, ok := q.popLocked()
		if ok && q.more() {
			q.signal() // let another waiting Next proceed
		}
		q.mu.Unlock()
		if ok {
			return ev, nil
		}
		select {
		case <-q.wake:
		case <-q.done:
		case <-ctx.Done():
			return roomnet.Event{}, ctx.Err()
		}
	}
}

func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		q.fetches = nil // their handlers refuse once the Topic is closed
		close(q.done)
		q.signal() // a poller learns of the close through wake
	}
}
