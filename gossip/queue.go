package gossip

import (
	"context"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/room"
)

// queue buffers a Topic's inbound events between its reader goroutines and
// Next. Messages go into a bounded FIFO (full: the new message is dropped);
// peer events are coalesced per peer (the latest kind wins), so they are
// bounded by the number of peers and never dropped. Pushing never blocks.
type queue struct {
	mu       sync.Mutex
	closed   bool
	msgs     []room.NetEvent // ring buffer
	head, n  int
	peers    []peer.ID // peers with a pending event, oldest first
	peerKind map[peer.ID]room.EventKind
	wake     chan struct{} // capacity 1
	done     chan struct{} // closed by close
}

func newQueue(size int) *queue {
	return &queue{
		msgs:     make([]room.NetEvent, size),
		peerKind: make(map[peer.ID]room.EventKind),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pushMessage appends ev; it returns false if the queue is full (ev dropped).
func (q *queue) pushMessage(ev room.NetEvent) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return true
	}
	if q.n == len(q.msgs) {
		return false
	}
	q.msgs[(q.head+q.n)%len(q.msgs)] = ev
	q.n++
	q.signal()
	return true
}

// pushPeer records the latest transport event for p.
func (q *queue) pushPeer(p peer.ID, kind room.EventKind) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if _, ok := q.peerKind[p]; !ok {
		q.peers = append(q.peers, p)
	}
	q.peerKind[p] = kind
	q.signal()
}

func (q *queue) popLocked() (room.NetEvent, bool) {
	if len(q.peers) > 0 {
		p := q.peers[0]
		q.peers[0] = ""
		q.peers = q.peers[1:]
		kind := q.peerKind[p]
		delete(q.peerKind, p)
		return room.NetEvent{Kind: kind, From: room.PeerID(p)}, true
	}
	if q.n > 0 {
		ev := q.msgs[q.head]
		q.msgs[q.head] = room.NetEvent{}
		q.head = (q.head + 1) % len(q.msgs)
		q.n--
		return ev, true
	}
	return room.NetEvent{}, false
}

func (q *queue) next(ctx context.Context) (room.NetEvent, error) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return room.NetEvent{}, room.ErrNetworkClosed
		}
		ev, ok := q.popLocked()
		if ok && (q.n > 0 || len(q.peers) > 0) {
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
			return room.NetEvent{}, ctx.Err()
		}
	}
}

func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.done)
	}
}
