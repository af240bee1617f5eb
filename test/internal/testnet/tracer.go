package testnet

import (
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Tracer is a pubsub.RawTracer that counts, per topic, the messages a
// host received from the network (every copy, before deduplication and
// validation). Pass it with pubsub.WithRawTracer in gossip.Config.Options.
type Tracer struct {
	mu         sync.Mutex
	received   map[string]int
	rejected   map[string]int // by pubsub's reason
	rejFrom    map[rejKey]int // by reason and author
	delivered  map[peer.ID]int
	duplicates int
	streams    map[peer.ID]int // outbound GossipSub streams opened minus closed
	mesh       map[string]map[peer.ID]bool
}

// Mesh returns how many peers are in this host's GossipSub mesh for topic.
func (tr *Tracer) Mesh(topic string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.mesh[topic])
}

// Graft implements pubsub.RawTracer.
func (tr *Tracer) Graft(p peer.ID, topic string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.mesh == nil {
		tr.mesh = make(map[string]map[peer.ID]bool)
	}
	if tr.mesh[topic] == nil {
		tr.mesh[topic] = make(map[peer.ID]bool)
	}
	tr.mesh[topic][p] = true
}

// Prune implements pubsub.RawTracer.
func (tr *Tracer) Prune(p peer.ID, topic string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	delete(tr.mesh[topic], p)
}

// OutboundStreams returns how many outbound GossipSub streams to p are
// open (opened and not yet reported closed).
func (tr *Tracer) OutboundStreams(p peer.ID) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.streams[p]
}

// OnNewOutboundStream implements pubsub.RawTracer.
func (tr *Tracer) OnNewOutboundStream(p peer.ID, _ protocol.ID) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.streams == nil {
		tr.streams = make(map[peer.ID]int)
	}
	tr.streams[p]++
}

// OnClosedOutboundStream implements pubsub.RawTracer.
func (tr *Tracer) OnClosedOutboundStream(p peer.ID) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.streams == nil {
		tr.streams = make(map[peer.ID]int)
	}
	tr.streams[p]--
}

var _ pubsub.RawTracer = (*Tracer)(nil)

// Received returns how many messages of topic arrived so far.
func (tr *Tracer) Received(topic string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.received[topic]
}

// RecvRPC implements pubsub.RawTracer.
func (tr *Tracer) RecvRPC(rpc *pubsub.RPC) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.received == nil {
		tr.received = make(map[string]int)
	}
	for _, m := range rpc.GetPublish() {
		tr.received[m.GetTopic()]++
	}
}

func (*Tracer) AddPeer(peer.ID, protocol.ID)    {}
func (*Tracer) RemovePeer(peer.ID)              {}
func (*Tracer) Join(string)                     {}
func (*Tracer) Leave(string)                    {}
func (*Tracer) ValidateMessage(*pubsub.Message) {}

// DeliverMessage implements pubsub.RawTracer: it counts delivered
// (validated, first-copy) messages per author.
func (tr *Tracer) DeliverMessage(m *pubsub.Message) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.delivered == nil {
		tr.delivered = make(map[peer.ID]int)
	}
	tr.delivered[m.GetFrom()]++
}

// Delivered returns how many messages authored by from pubsub delivered
// (accepted by validation, duplicates not counted).
func (tr *Tracer) Delivered(from peer.ID) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.delivered[from]
}

type rejKey struct {
	reason string
	from   peer.ID
}

// RejectedFrom returns how many messages authored by from pubsub rejected
// for reason.
func (tr *Tracer) RejectedFrom(reason string, from peer.ID) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.rejFrom[rejKey{reason, from}]
}

// Rejected returns how many messages pubsub rejected for reason (one of
// pubsub's Reject* constants, e.g. pubsub.RejectInvalidSignature).
func (tr *Tracer) Rejected(reason string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.rejected[reason]
}

// Duplicates returns how many messages pubsub dropped as already seen.
func (tr *Tracer) Duplicates() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.duplicates
}

// RejectMessage implements pubsub.RawTracer.
func (tr *Tracer) RejectMessage(m *pubsub.Message, reason string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.rejected == nil {
		tr.rejected = make(map[string]int)
		tr.rejFrom = make(map[rejKey]int)
	}
	tr.rejected[reason]++
	tr.rejFrom[rejKey{reason, m.GetFrom()}]++
}

// DuplicateMessage implements pubsub.RawTracer.
func (tr *Tracer) DuplicateMessage(*pubsub.Message) {
	tr.mu.Lock()
	tr.duplicates++
	tr.mu.Unlock()
}

func (*Tracer) ThrottlePeer(peer.ID)                                 {}
func (*Tracer) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (*Tracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (*Tracer) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (*Tracer) UndeliverableMessage(*pubsub.Message)                 {}
