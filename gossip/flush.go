package gossip

import (
	"bytes"
	"context"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// leaveFlushTimeout bounds how long a goodbye waits for this peer's earlier
// messages to be written before it is sent directly (flushOwn).
const leaveFlushTimeout = 250 * time.Millisecond

// flushOwn waits, at most d or until ctx ends, until every own message
// handed to GossipSub so far is routed and written to its peers' streams.
// On an app's pubsub (Attach) the writes cannot be followed: it returns
// once they are routed.
func (r *Router) flushOwn(ctx context.Context, d time.Duration) {
	r.ps.ListPeers("") // returns after pubsub's event loop routed what came before
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if !r.sent.waitWritten(ctx) {
		r.log.Debug("own messages still queued before a goodbye", "timeout", d)
	}
}

// Own messages are followed through GossipSub so that a graceful close
// (Shutdown) does not discard them (best effort, bounded by its ctx;
// docs/PROTOCOL.md, "Lifecycle"):
//
//  1. Topic.Publish counts each own message it hands to pubsub; the
//     subscription's message filter, which pubsub calls on its event loop
//     right before routing the message to the peers' queues, counts it as
//     routed (and drops it: Next never returns own messages). Topic.Shutdown
//     waits until every published message was routed before it cancels the
//     subscription; its next request to pubsub's event loop returns only
//     after that routing step.
//  2. sendTracker (a pubsub.RawTracer) counts, per peer, queued RPCs that
//     carry an own message and are not written to the peer's stream yet.
//     Router.Shutdown waits until there are none before it stops GossipSub.
//
// Data written to a stream can still be lost below pubsub, for example if
// the host closes its connections right after. Neither is what carries the
// goodbye to directly connected peers: the acknowledged direct goodbye
// (leave.go) does; docs/PROTOCOL.md 2.10 says what each mechanism is for
// and what removing it showed.

// waitCond is a condition on state guarded by mu that goroutines can
// wait for, bounded by a context.
type waitCond struct {
	mu      sync.Mutex
	changed chan struct{} // closed on the next change, if someone waits
}

// notifyLocked wakes the waiters; mu is held.
func (w *waitCond) notifyLocked() {
	if w.changed != nil {
		close(w.changed)
		w.changed = nil
	}
}

// wait waits until cond (called with mu held) holds or ctx ends.
func (w *waitCond) wait(ctx context.Context, cond func() bool) bool {
	for {
		w.mu.Lock()
		if cond() {
			w.mu.Unlock()
			return true
		}
		if w.changed == nil {
			w.changed = make(chan struct{})
		}
		ch := w.changed
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// ownCount counts a Topic's own messages: published (handed to pubsub) and
// routed (seen by the subscription filter).
type ownCount struct {
	waitCond
	published, routed uint64
}

func (c *ownCount) publish() {
	c.mu.Lock()
	c.published++
	c.mu.Unlock()
}

func (c *ownCount) route() {
	c.mu.Lock()
	c.routed++
	c.notifyLocked()
	c.mu.Unlock()
}

// waitRouted waits until every published message was routed, or ctx ends.
func (c *ownCount) waitRouted(ctx context.Context) bool {
	return c.wait(ctx, func() bool { return c.routed >= c.published })
}

// sendTracker counts, per peer, queued RPCs that carry an own message and
// are not written yet: SendRPC minus SendRPCCompleted; a peer whose stream
// closes is reset (its queue is discarded with it). A count may go below
// zero for a moment: the writer can finish an RPC before pubsub reports
// queueing it.
type sendTracker struct {
	nopTracer
	waitCond
	self   []byte
	queued map[peer.ID]int
}

func newSendTracker(self peer.ID) *sendTracker {
	return &sendTracker{self: []byte(self), queued: make(map[peer.ID]int)}
}

var _ pubsub.RawTracer = (*sendTracker)(nil)

// carriesOwn reports whether rpc carries a message authored by this host.
func (st *sendTracker) carriesOwn(rpc *pubsub.RPC) bool {
	for _, m := range rpc.GetPublish() {
		if bytes.Equal(m.GetFrom(), st.self) {
			return true
		}
	}
	return false
}

// add adds d queued RPCs for p (negative: written).
func (st *sendTracker) add(p peer.ID, d int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if n := st.queued[p] + d; n == 0 {
		delete(st.queued, p)
	} else {
		st.queued[p] = n
	}
	st.notifyLocked()
}

// waitWritten waits until no own RPC is queued, or ctx ends.
func (st *sendTracker) waitWritten(ctx context.Context) bool {
	return st.wait(ctx, func() bool {
		for _, n := range st.queued {
			if n > 0 {
				return false
			}
		}
		return true
	})
}

func (st *sendTracker) SendRPC(rpc *pubsub.RPC, p peer.ID) {
	if st.carriesOwn(rpc) {
		st.add(p, 1)
	}
}

func (st *sendTracker) SendRPCCompleted(rpc *pubsub.RPC, p peer.ID, _ time.Duration) {
	if st.carriesOwn(rpc) {
		st.add(p, -1)
	}
}

// OnClosedOutboundStream: the peer's queue is discarded with its stream.
func (st *sendTracker) OnClosedOutboundStream(p peer.ID) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.queued, p)
	st.notifyLocked()
}

// nopTracer is a pubsub.RawTracer that ignores every callback; a tracer
// embeds it and implements the callbacks it needs.
type nopTracer struct{}

var _ pubsub.RawTracer = nopTracer{}

func (nopTracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (nopTracer) OnClosedOutboundStream(peer.ID)                       {}
func (nopTracer) Join(string)                                          {}
func (nopTracer) Leave(string)                                         {}
func (nopTracer) Graft(peer.ID, string)                                {}
func (nopTracer) Prune(peer.ID, string)                                {}
func (nopTracer) ValidateMessage(*pubsub.Message)                      {}
func (nopTracer) DeliverMessage(*pubsub.Message)                       {}
func (nopTracer) RejectMessage(*pubsub.Message, string)                {}
func (nopTracer) DuplicateMessage(*pubsub.Message)                     {}
func (nopTracer) ThrottlePeer(peer.ID)                                 {}
func (nopTracer) RecvRPC(*pubsub.RPC)                                  {}
func (nopTracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (nopTracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (nopTracer) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (nopTracer) UndeliverableMessage(*pubsub.Message)                 {}
