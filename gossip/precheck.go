package gossip

import (
	"strings"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// validateQueueSize is pubsub's validation queue (WithValidateQueueSize):
// messages that passed the pre-check wait here for a validation worker
// (signature, then Topic.validate). The pre-check admits at most Burst
// messages at once per (forwarder, author) pair, so the queue holds about
// five full bursts at the default Burst of 200 before anything is dropped
// as "validation throttled".
const validateQueueSize = 1024

// The pre-check (docs/PROTOCOL.md 2.5, "Before the queue"): pubsub reads
// an RPC on its single event loop and pushes each message into the shared
// validation queue; signature verification and Convene's own validator,
// with its per-author token bucket, run later on the queue's workers. So a
// flood filled the queue before any rate limit applied, and honest
// messages arriving meanwhile were dropped as "validation throttled". The
// pre-check runs on the event loop, before the queue, for every message of
// an inbound RPC: a token bucket per (room, forwarding peer, claimed
// author), with the room's Rate and Burst when the forwarding peer is the
// claimed author and twice that for relayed copies (see allow). A message
// over it is dropped there, costing no signature check and no queue slot.
//
// The forwarding peer is authenticated (the connection's peer); the
// claimed author is not (its signature is checked later), which is why the
// bucket is keyed by both: a forger naming an honest author drains only
// its own (forger, author) bucket, never the honest author's buckets at
// other forwarders. An honest relay forwards only what its own validator
// accepted (at most Rate/s with Burst per author), so it stays inside its
// buckets. When the forwarding peer is the claimed author itself, each
// dropped message is a rate violation charged to it (P5, as in
// Topic.validate): a flooder is graylisted by its own flood.
type precheck struct {
	lim  *limiters[preKey]
	viol *rateViolations

	mu sync.Mutex
	// counted: per open room topic, the Topic whose PreLimited counter a
	// dropped message is counted in (anything else counts on the Router).
	counted  map[string]*Topic
	unrouted *counters
}

type preKey struct {
	topic     string
	forwarder peer.ID
	author    peer.ID
}

func newPrecheck(r float64, burst, max int, viol *rateViolations, unrouted *counters) *precheck {
	// A full table lets messages through to the queue: the validator's
	// own per-author limit still applies there.
	return &precheck{lim: newLimiters[preKey](r, burst, max, true), viol: viol,
		counted: make(map[string]*Topic), unrouted: unrouted}
}

// track makes t count its room's pre-check drops (nil: stop).
func (c *precheck) track(name string, t *Topic) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t == nil {
		delete(c.counted, name)
		return
	}
	c.counted[name] = t
}

// inspect is the pubsub application-specific RPC inspector: it removes the
// over-rate messages from rpc before pubsub pushes them into the
// validation queue. It never rejects the RPC as a whole (subscriptions and
// control messages go on).
func (c *precheck) inspect(from peer.ID, rpc *pubsub.RPC) error {
	msgs := rpc.GetPublish()
	if len(msgs) == 0 {
		return nil
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := msgs[:0]
	for _, m := range msgs {
		topic := m.GetTopic()
		if !strings.HasPrefix(topic, TopicPrefix) {
			kept = append(kept, m) // pubsub ignores it anyway
			continue
		}
		author := peer.ID(m.GetFrom())
		if c.allow(preKey{topic, from, author}, author == from, now) {
			kept = append(kept, m)
			continue
		}
		if t := c.counted[topic]; t != nil {
			t.count(cPreLimited)
		} else {
			c.unrouted[cPreLimited].Add(1)
		}
		if author == from {
			c.viol.add(from, now)
		}
	}
	for i := len(kept); i < len(msgs); i++ {
		msgs[i] = nil
	}
	rpc.Publish = kept
	return nil
}

// allow takes a token from k's bucket: Rate and Burst for an author's own
// messages, twice that for copies relayed by another peer. The headroom
// keeps honest relays clear of the pre-check: a relay forwards only what
// its own bucket for that author let through, but buckets at different
// nodes disagree at the margin, and a relayed copy dropped here, before
// pubsub sees it, also breaks the relay's gossip promise if it answered an
// IWANT (P7, a penalty for the honest relay).
func (c *precheck) allow(k preKey, own bool, now time.Time) bool {
	scale := 2
	if own {
		scale = 1
	}
	return c.lim.allow(k, scale, now)
}
