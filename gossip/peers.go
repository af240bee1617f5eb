package gossip

import (
	"context"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/convene-p2p/convene/room/roomnet"
)

// A PeerJoin is reported to the room as EventPeerUp once the peer is in the
// topic's peer list (ListPeers: its subscription arrived and our send queue
// to it exists), so that a Publish right after the PeerUp reaches it, or
// after peerUpWait in any case.
//
// pubsub's PeerJoin alone is not that: it fires when the peer's
// subscription arrives, and that can come before our send queue to the
// peer exists (the peer finished identifying us and opened its stream
// before we finished identifying it; pubsub creates our queue only after
// our identify). Nothing in pubsub's public events marks the queue; its
// raw tracer's OnNewOutboundStream comes right after it, on pubsub's
// event loop. So a peer that is not listed at its PeerJoin is checked again
// each time GossipSub opens an outbound stream (streamWatch, installed on
// a Router that starts its own GossipSub) — no polling. On an app's pubsub
// (Attach) no tracer of ours can be installed, and such a peer is polled
// every peerUpPoll as before. TestPeerUpWaitsForTheSendQueue counts how
// often the PeerJoin comes first.
const (
	peerUpPoll = 5 * time.Millisecond
	peerUpWait = 2 * time.Second
)

// joined is a PeerJoin not reported yet.
type joined struct {
	at       time.Time
	deferred bool // not listed at its first check
}

// peerLoop turns pubsub's PeerJoin/PeerLeave into EventPeerUp/EventPeerDown.
func (t *Topic) peerLoop() {
	defer t.wg.Done()
	pending := make(map[peer.ID]*joined)
	for {
		wait, cancel := t.ctx, context.CancelFunc(nil)
		var stop func() bool
		if len(pending) > 0 {
			// Taken before the check, so that a stream opened after it
			// ends the wait below.
			opened := t.r.opened.next()
			if due, ok := t.reportListed(pending); ok {
				if poll := time.Now().Add(peerUpPoll); opened == nil && poll.Before(due) {
					due = poll // an app's pubsub: no tracer, poll
				}
				wait, cancel = context.WithDeadline(t.ctx, due)
				if opened != nil {
					stop = context.AfterFunc(opened, cancel)
				}
			}
		}
		ev, err := t.evh.NextPeerEvent(wait)
		if stop != nil {
			stop()
		}
		if cancel != nil {
			cancel()
		}
		if t.ctx.Err() != nil {
			return
		}
		if err != nil || ev.Peer == t.self {
			continue
		}
		switch ev.Type {
		case pubsub.PeerJoin:
			pending[ev.Peer] = &joined{at: time.Now()}
		case pubsub.PeerLeave:
			if _, ok := pending[ev.Peer]; ok {
				delete(pending, ev.Peer) // never reported up
			} else {
				t.q.pushPeer(ev.Peer, roomnet.EventPeerDown)
			}
		}
	}
}

// reportListed reports the pending peers that are listed (or have waited
// peerUpWait) as EventPeerUp and forgets them; it returns when the oldest
// of those left is due, ok false if none is left.
func (t *Topic) reportListed(pending map[peer.ID]*joined) (due time.Time, ok bool) {
	listed := make(map[peer.ID]bool)
	for _, p := range t.pt.ListPeers() {
		listed[p] = true
	}
	now := time.Now()
	for p, j := range pending {
		if listed[p] || now.Sub(j.at) >= peerUpWait {
			delete(pending, p)
			t.q.pushPeer(p, roomnet.EventPeerUp)
			continue
		}
		if !j.deferred {
			j.deferred = true
			t.deferredUps.Add(1)
		}
		if d := j.at.Add(peerUpWait); !ok || d.Before(due) {
			due, ok = d, true
		}
	}
	return due, ok
}

// streamWatch is a pubsub raw tracer that tells of GossipSub's new
// outbound streams (each comes right after the send queue to its peer is
// created): the context next returns is cancelled at the next one.
// OnNewOutboundStream runs on pubsub's event loop and only cancels.
type streamWatch struct {
	nopTracer
	mu     sync.Mutex
	on     bool // installed (a Router that starts its own GossipSub)
	ctx    context.Context
	cancel context.CancelFunc
}

func newStreamWatch(on bool) *streamWatch {
	w := &streamWatch{on: on}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	return w
}

// next returns a context cancelled when GossipSub next opens an outbound
// stream, or nil if the watch is not installed.
func (w *streamWatch) next() context.Context {
	if w == nil || !w.on {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ctx
}

func (w *streamWatch) OnNewOutboundStream(peer.ID, protocol.ID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cancel()
	w.ctx, w.cancel = context.WithCancel(context.Background())
}

var _ pubsub.RawTracer = (*streamWatch)(nil)
