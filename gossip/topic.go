package gossip

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/ephemeral"
	"github.com/convene-p2p/convene/internal/stop"

	"github.com/convene-p2p/convene/room/roomnet"
)

var (
	_ roomnet.Network    = (*Topic)(nil)
	_ roomnet.Shutdowner = (*Topic)(nil)
)

const (
	// subBufferSize is pubsub's per-subscription buffer; the reader goroutine
	// drains it into the Topic's own queue at once.
	subBufferSize = 256
)

// Topic is one joined room: it implements roomnet.Network over a GossipSub
// topic. It is safe for concurrent use.
type Topic struct {
	r      *Router
	roomID string
	name   string
	self   peer.ID
	lim    *limiters[peer.ID]
	stats  counters
	q      *queue
	own    ownCount  // own messages published and routed (flush.go)
	bye    *goodbyes // goodbyes seen, authors heard (leave.go)
	// deferredUps counts PeerJoins that came before the peer was listed
	// (peers.go).
	deferredUps atomic.Uint64

	// Goroutines passing goodbyes on (leave.go); Close waits for them.
	fwdMu     sync.Mutex
	fwdClosed bool
	fwdWG     sync.WaitGroup

	pt  *pubsub.Topic
	sub *pubsub.Subscription
	evh *pubsub.TopicEventHandler

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closed atomic.Bool
	stop   stop.Once // Shutdown, Close
}

// openTopic is Join's body; r.mu is held.
func (r *Router) openTopic(roomID string) (_ *Topic, err error) {
	t := &Topic{
		r:      r,
		roomID: roomID,
		name:   TopicName(roomID),
		self:   r.self,
		lim:    newLimiters[peer.ID](r.cfg.Rate, r.cfg.Burst, r.cfg.maxTrackedAuthors(), false),
		q:      newQueue(r.cfg.QueueSize),
		bye:    newGoodbyes(r.cfg.maxTrackedAuthors()),
	}
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	r.pre.track(t.name, t)
	undo = append(undo, func() { r.pre.track(t.name, nil) })
	// The validator is in place before the subscription exists, so that no
	// message is ever delivered unvalidated.
	if err := r.ps.RegisterTopicValidator(t.name, pubsub.ValidatorEx(t.validate), pubsub.WithValidatorInline(true)); err != nil {
		return nil, err
	}
	undo = append(undo, func() { _ = r.ps.UnregisterTopicValidator(t.name) })
	if t.pt, err = r.ps.Join(t.name); err != nil {
		return nil, err
	}
	undo = append(undo, func() { _ = t.pt.Close() })
	if err = t.pt.SetScoreParams(topicScoreParams()); err != nil {
		if !r.shared {
			return nil, err
		}
		// An app's pubsub without peer scoring (Attach): the room runs
		// unscored; invalid messages are still rejected.
		r.log.Debug("room topic unscored", "room", roomID, "err", err)
		err = nil
	}
	if t.evh, err = t.pt.EventHandler(); err != nil {
		return nil, err
	}
	undo = append(undo, t.evh.Cancel)
	if t.sub, err = t.pt.Subscribe(pubsub.WithBufferSize(subBufferSize), pubsub.WithMessageFilter(t.filter)); err != nil {
		return nil, err
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.wg.Add(2)
	go t.readLoop()
	go t.peerLoop()
	return t, nil
}

// RoomID returns the room's ID.
func (t *Topic) RoomID() string { return t.roomID }

// Stats returns this room's counters.
func (t *Topic) Stats() Stats { return t.stats.snapshot() }

// Peers returns the peers a Publish on this room currently reaches directly
// (see Router.Peers).
func (t *Topic) Peers() []peer.ID {
	if t.closed.Load() {
		return nil
	}
	return t.pt.ListPeers()
}

// Publish encodes m and publishes it on the room topic, signed by the local
// peer. With flood publishing (the default) it is sent at once to every peer
// in Peers(); see docs/PROTOCOL.md for what is guaranteed to whom. It fails
// with ErrMalformed, ErrTooLarge or ErrWrongAuthor (wrapped) for a message
// that other peers would reject.
//
// A goodbye (roomnet.KindLeave) is also sent directly to every peer in Peers()
// over LeaveProtocol, concurrently, and Publish returns once every one of
// them acknowledged it (queued it for its room), or failed, or ctx ended,
// or 2 s passed, or the Topic was closed: a Close right after it cannot
// discard the goodbye for directly connected peers. Peers that are not
// directly connected get it over GossipSub and, when this peer has heard
// members missing from Peers() in the last 2 minutes, from the direct
// peers, which are asked to pass the signed goodbye on (docs/PROTOCOL.md
// §2.9). A peer may thus receive a goodbye twice (over a stream and
// through GossipSub); the room ignores the second. Failed direct deliveries are not an error (the goodbye was handed
// to GossipSub); Stats.LeaveAcked counts the acknowledged ones.
func (t *Topic) Publish(ctx context.Context, m roomnet.Message) error {
	if t.closed.Load() {
		return roomnet.ErrNetworkClosed
	}
	data, err := EncodeMessage(m)
	if err != nil {
		return fmt.Errorf("gossip: publish: %w", err)
	}
	if _, err := t.r.check(data, t.self); err != nil {
		return fmt.Errorf("gossip: publish: %w", err)
	}
	if err := t.pt.Publish(ctx, data); err != nil {
		if t.closed.Load() || errors.Is(err, pubsub.ErrTopicClosed) {
			return roomnet.ErrNetworkClosed
		}
		return fmt.Errorf("gossip: publish: %w", err)
	}
	t.own.publish()
	t.count(cPublished)
	if m.Kind == roomnet.KindLeave {
		// The direct goodbye is a stream of its own: it could overtake
		// this peer's earlier messages still queued in GossipSub, and a
		// receiver drops what arrives after the goodbye. Let them be
		// written first (bounded).
		t.r.flushOwn(ctx, leaveFlushTimeout)
		t.deliverLeave(ctx, data)
	}
	return nil
}

// Next returns the next inbound event: a validated message from another peer
// (never an own one), a PeerUp/PeerDown transport hint, or another peer's
// Fetch request (EventFetch: answer it on its Reply, or it is refused as
// busy after FetchTimeout/2). Fetch requests come first and are never
// dropped. Peer events are coalesced per peer (the latest wins) and never
// dropped. A peer event is returned after every message from the same
// peer that was queued before it (a PeerDown never overtakes that peer's
// goodbye), and ahead of other peers' queued messages. Messages are
// returned in the order they were queued. After Close it returns roomnet.ErrNetworkClosed. Next is the
// blocking form of TryNext, for tests and tools that read a Topic without
// a room; a room polls (Ready, TryNext).
func (t *Topic) Next(ctx context.Context) (roomnet.Event, error) {
	return t.q.next(ctx)
}

// Ready and TryNext are how a room takes events (roomnet.Network): straight
// from the queue on its own loop. Ready receives a value when
// events may be queued (and after Close); TryNext returns the next one in
// Next's order without blocking, and roomnet.ErrNetworkClosed after Close.
// Use either Next or Ready/TryNext, not both.
func (t *Topic) Ready() <-chan struct{} { return t.q.wake }

// TryNext: see Ready.
func (t *Topic) TryNext() (roomnet.Event, bool, error) { return t.q.tryNext() }

// Shutdown leaves the room gracefully: it waits, bounded by ctx, until
// every own message handed to GossipSub (a goodbye) has been routed by
// pubsub's event loop, that is queued for each peer it goes to (normally
// microseconds; the Router keeps writing those queues while it runs, and
// Router.Shutdown waits until they are written), then closes the Topic as
// Close does. If ctx ends first (or had ended already), Shutdown closes at
// once and returns ctx's error, joined with any close error. Shutdown and
// Close stop the Topic once; every later call of either returns the first
// one's result. A Close during a Shutdown cuts its wait short.
func (t *Topic) Shutdown(ctx context.Context) error {
	return t.stop.Shutdown(ctx, t.shutdown)
}

// Close leaves the room at once: it cancels the subscription and the event
// handler, waits for the reader goroutines, closes the pubsub topic and
// removes the validator. In-flight Fetch calls and direct goodbye
// deliveries on this Topic are aborted. Own messages that pubsub's event
// loop has not routed yet are not waited for (Shutdown does); GossipSub
// may still send them while the Router runs. Close is idempotent and
// returns the same result every time (see Shutdown).
func (t *Topic) Close() error {
	return t.stop.Close(t.shutdown)
}

// shutdown is the Topic's stop (Shutdown, Close).
func (t *Topic) shutdown(ctx context.Context, graceful bool) error {
	t.closed.Store(true)
	t.q.close()
	t.cancel()
	late := false
	if graceful {
		// Own messages still on their way into pubsub's event loop are
		// routed before the subscription goes (flush.go).
		late = ctx.Err() != nil || !t.own.waitRouted(ctx)
		if late {
			t.r.log.Debug("shutdown: own messages not routed before ctx ended", "room", t.roomID, "err", ctx.Err())
		}
	}
	t.sub.Cancel()
	t.evh.Cancel()
	t.wg.Wait()
	t.fwdMu.Lock()
	t.fwdClosed = true
	t.fwdMu.Unlock()
	t.fwdWG.Wait() // aborted by t.ctx
	err := t.pt.Close()
	if verr := t.r.ps.UnregisterTopicValidator(t.name); err == nil {
		err = verr
	}
	t.r.pre.track(t.name, nil)
	t.r.removeTopic(t)
	if err != nil {
		err = fmt.Errorf("gossip: close %q: %w", t.roomID, err)
	}
	return stop.Result(ctx, late, err)
}

func (t *Topic) count(c counter) {
	t.stats[c].Add(1)
	t.r.stats[c].Add(1)
}

// validate is the topic validator, run inline by pubsub for every message
// (the first copy of each message ID), including own publishes. See
// docs/PROTOCOL.md, "Validation".
func (t *Topic) validate(_ context.Context, src peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	if src == t.self {
		// Own publish: Publish has already checked it.
		return pubsub.ValidationAccept
	}
	signer := msg.GetFrom()
	now := time.Now()
	if t.r.bans.banned(signer, now) {
		// Banned for its invalid messages: ignored whoever relays it.
		t.count(cBanned)
		return pubsub.ValidationIgnore
	}
	if !t.lim.allow(signer, 1, now) {
		// Ignore, never Reject: relays' buckets disagree at the margin, and
		// pubsub would penalise every honest relay delivering a copy. The
		// author is penalised instead (P5) if it sent the message itself.
		t.count(cRateLimited)
		if src == signer {
			t.r.rateViol.add(signer, now)
		}
		return pubsub.ValidationIgnore
	}
	m, err := t.r.check(msg.GetData(), signer)
	if err != nil {
		t.count(reason(err))
		t.r.bans.reject(signer, now)
		t.r.log.Debug("rejected message", "room", t.roomID, "from", signer, "via", src, "err", err)
		return pubsub.ValidationReject
	}
	msg.ValidatorData = &m
	t.count(cAccepted)
	return pubsub.ValidationAccept
}

// check applies every content check to an encoded envelope authored by
// author: size, envelope decoding, a suspect's subject (a peer ID), the
// presence state (ephemeral.Verify: decodable, within Limits, describing
// author only), and the envelope's tie to it (checkPresence: present
// exactly on hello/heartbeat/delta, of the right kind, same epoch).
func (r *Router) check(data []byte, author peer.ID) (roomnet.Message, error) {
	if len(data) > r.cfg.MaxMessageSize {
		return roomnet.Message{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), r.cfg.MaxMessageSize)
	}
	if author == "" {
		return roomnet.Message{}, fmt.Errorf("%w: unsigned", ErrMalformed)
	}
	m, err := DecodeMessage(data)
	if err != nil {
		return roomnet.Message{}, err
	}
	if m.Kind == roomnet.KindSuspect {
		if _, err := peer.IDFromBytes([]byte(m.Subject)); err != nil {
			return roomnet.Message{}, fmt.Errorf("%w: suspect subject is not a peer ID: %w", ErrMalformed, err)
		}
	}
	if len(m.State) > 0 {
		if err := ephemeral.Verify(m.State, ephemeral.PeerID(author), r.cfg.Limits); err != nil {
			switch {
			case errors.Is(err, ephemeral.ErrForeignPeer):
				return roomnet.Message{}, fmt.Errorf("%w: %w", ErrWrongAuthor, err)
			case errors.Is(err, ephemeral.ErrTooLarge), errors.Is(err, ephemeral.ErrKeyTooLong),
				errors.Is(err, ephemeral.ErrValueTooLarge), errors.Is(err, ephemeral.ErrTooManyKeys),
				errors.Is(err, ephemeral.ErrTooManyPeers):
				return roomnet.Message{}, fmt.Errorf("%w: state: %w", ErrTooLarge, err)
			default:
				return roomnet.Message{}, fmt.Errorf("%w: state: %w", ErrMalformed, err)
			}
		}
	}
	if err := checkPresence(m); err != nil {
		return roomnet.Message{}, err
	}
	return m, nil
}

// reason maps a check error to its counter.
func reason(err error) counter {
	switch {
	case errors.Is(err, ErrWrongAuthor):
		return cWrongAuthor
	case errors.Is(err, ErrTooLarge):
		return cOversized
	default:
		return cMalformed
	}
}

// filter is the subscription's message filter, called on pubsub's event
// loop right before it routes a message: it counts own messages as routed
// and keeps them out of the subscription (Next never returns them).
func (t *Topic) filter(msg *pubsub.Message) bool {
	if msg.ReceivedFrom == t.self {
		t.own.route()
		return false
	}
	return true
}

// readLoop moves validated messages from the subscription to the queue.
func (t *Topic) readLoop() {
	defer t.wg.Done()
	for {
		msg, err := t.sub.Next(t.ctx)
		if err != nil {
			return // Close
		}
		from := msg.GetFrom()
		if msg.ReceivedFrom == t.self || from == t.self {
			continue
		}
		m, ok := msg.ValidatorData.(*roomnet.Message)
		if !ok {
			continue // not validated by us; cannot happen
		}
		ev := roomnet.Event{Kind: roomnet.EventMessage, From: roomnet.PeerID(from), Msg: *m}
		if m.Kind == roomnet.KindLeave {
			t.bye.got(goodbyeKey{author: from, epoch: m.Epoch}, msg.ReceivedFrom, false, false, time.Now())
		} else {
			t.bye.heard(from, time.Now())
		}
		switch m.Kind {
		case roomnet.KindHello, roomnet.KindHeartbeat, roomnet.KindDelta:
			ev.Signed = signedForm(msg) // the room may relay it in Fetch replies
		}
		if !t.q.pushMessage(ev) {
			t.count(cDropped)
		}
	}
}
