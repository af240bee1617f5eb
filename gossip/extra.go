package gossip

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Extra topics (docs/PROTOCOL.md 2.1): GossipSub topics that are not rooms,
// which a Router Convene starts admits because its owner named them at
// NewWithTopics (the repo names its namespace's document announcement
// topic, docsync.AnnounceTopic). Exactly those names pass the subscription
// filter, local and remote; every other non-room topic is still refused.
// They are joined through Router.Extra by a package that brings its own
// validator (gossip knows nothing of their content). The Router adds two
// things of its own, both for the shared GossipSub rather than the topic's
// content: a pre-check token bucket per (topic, forwarder, author) before
// the validation queue, as for rooms, so a flood on an extra topic cannot
// fill the queue room messages wait in; and score parameters that charge
// rejected messages (P4) as on a room topic and reward nothing.

// ErrNotExtra is returned by Router.Extra's methods for a topic that is not
// one of the Router's extra topics.
var ErrNotExtra = errors.New("gossip: not an extra topic of this router")

const (
	// extraRate and extraBurst bound the messages of one author on one
	// extra topic that one forwarding peer may hand us (twice that for
	// relayed copies, as for rooms). Docsync coalesces its announcements
	// to at most 4 per second per document, so 20/s is five documents
	// changing continuously; beyond it announcements are a hint that may
	// be dropped (the streams carry the data).
	extraRate  = 20
	extraBurst = 100
	// maxExtraTopics bounds NewWithTopics' list.
	maxExtraTopics = 16
)

// extraTopics is the Router's record of its extra topics.
type extraTopics struct {
	names map[string]bool
	pre   *limiters[preKey]
	viol  *rateViolations
	stats *counters

	mu        sync.Mutex
	validated map[string]bool // a validator is registered through Extra
}

func newExtraTopics(names []string, viol *rateViolations, stats *counters) (*extraTopics, error) {
	if len(names) > maxExtraTopics {
		return nil, fmt.Errorf("gossip: %d extra topics (at most %d)", len(names), maxExtraTopics)
	}
	x := &extraTopics{
		names: make(map[string]bool, len(names)),
		// A full table lets messages through: the topic's validator
		// still runs on them.
		pre:       newLimiters[preKey](extraRate, extraBurst, 4096, true),
		viol:      viol,
		stats:     stats,
		validated: make(map[string]bool),
	}
	for _, n := range names {
		if n == "" || strings.HasPrefix(n, TopicPrefix) {
			return nil, fmt.Errorf("gossip: extra topic %q: empty, or a room topic", n)
		}
		x.names[n] = true
	}
	return x, nil
}

// admits reports whether topic is an extra topic (nil x: none).
func (x *extraTopics) admits(topic string) bool { return x != nil && x.names[topic] }

// inspect is the extra topics' pre-check, run on pubsub's event loop for
// every inbound RPC before the room pre-check (which passes non-room
// topics through): a message of an extra topic over its (topic,
// forwarder, author) bucket is removed from rpc, counted in
// Stats.PreLimited, and charged to its author as a rate violation (P5)
// when the author sent it itself.
func (x *extraTopics) inspect(from peer.ID, rpc *pubsub.RPC) {
	msgs := rpc.GetPublish()
	if x == nil || len(x.names) == 0 || len(msgs) == 0 {
		return
	}
	now := time.Now()
	kept := msgs[:0]
	for _, m := range msgs {
		if !x.names[m.GetTopic()] {
			kept = append(kept, m)
			continue
		}
		author := peer.ID(m.GetFrom())
		scale := 2
		if author == from {
			scale = 1
		}
		if x.pre.allow(preKey{m.GetTopic(), from, author}, scale, now) {
			kept = append(kept, m)
			continue
		}
		x.stats[cPreLimited].Add(1)
		if author == from {
			x.viol.add(from, now)
		}
	}
	for i := len(kept); i < len(msgs); i++ {
		msgs[i] = nil
	}
	rpc.Publish = kept
}

// extraScoreParams are the score parameters of an extra topic: P4 as on a
// room topic (a rejected message costs its forwarder -10 × count²; an honest
// relay never forwards one, since every node runs the same deterministic
// validator), nothing to earn (P1, P2 off: a quiet announcement topic
// should not buy slack for abuse elsewhere), P3 off as on rooms.
func extraScoreParams() *pubsub.TopicScoreParams {
	p := topicScoreParams()
	p.TimeInMeshWeight, p.TimeInMeshCap = 0, 0 // the quantum stays non-zero (LIBP2P.md §1.4)
	p.FirstMessageDeliveriesWeight, p.FirstMessageDeliveriesDecay, p.FirstMessageDeliveriesCap = 0, 0, 0
	return p
}

// ExtraTopics is a Router's GossipSub restricted to its extra topics (the
// names given to NewWithTopics): Join, RegisterTopicValidator and
// UnregisterTopicValidator behave as *pubsub.PubSub's for those names and
// return ErrNotExtra for any other. Join requires the topic's validator to
// be registered first, so no message of it is ever delivered unvalidated.
// A Router attached to an app's pubsub (Attach) has no extra topics: use
// the app's pubsub for its own topics.
type ExtraTopics struct{ r *Router }

// Extra returns r's extra topics.
func (r *Router) Extra() ExtraTopics { return ExtraTopics{r} }

func (x ExtraTopics) check(topic string) error {
	if !x.r.extra.admits(topic) {
		return fmt.Errorf("%w: %q", ErrNotExtra, topic)
	}
	x.r.mu.Lock()
	defer x.r.mu.Unlock()
	if x.r.closed {
		return ErrClosed
	}
	return nil
}

// RegisterTopicValidator registers val (as pubsub.RegisterTopicValidator)
// for the extra topic.
func (x ExtraTopics) RegisterTopicValidator(topic string, val any, opts ...pubsub.ValidatorOpt) error {
	if err := x.check(topic); err != nil {
		return err
	}
	if err := x.r.ps.RegisterTopicValidator(topic, val, opts...); err != nil {
		return err
	}
	x.r.extra.mu.Lock()
	x.r.extra.validated[topic] = true
	x.r.extra.mu.Unlock()
	return nil
}

// UnregisterTopicValidator removes the extra topic's validator.
func (x ExtraTopics) UnregisterTopicValidator(topic string) error {
	if !x.r.extra.admits(topic) {
		return fmt.Errorf("%w: %q", ErrNotExtra, topic)
	}
	x.r.extra.mu.Lock()
	delete(x.r.extra.validated, topic)
	x.r.extra.mu.Unlock()
	return x.r.ps.UnregisterTopicValidator(topic)
}

// Join joins the extra topic (pubsub.Join) and sets its score parameters
// (see extraScoreParams); the caller owns the handle and closes it before
// the Router. Its validator must be registered first.
func (x ExtraTopics) Join(topic string, opts ...pubsub.TopicOpt) (*pubsub.Topic, error) {
	if err := x.check(topic); err != nil {
		return nil, err
	}
	x.r.extra.mu.Lock()
	ok := x.r.extra.validated[topic]
	x.r.extra.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("gossip: extra topic %q: register its validator before Join", topic)
	}
	t, err := x.r.ps.Join(topic, opts...)
	if err != nil {
		return nil, err
	}
	if err := t.SetScoreParams(extraScoreParams()); err != nil {
		_ = t.Close()
		return nil, fmt.Errorf("gossip: extra topic %q: %w", topic, err)
	}
	return t, nil
}
