package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/convene-p2p/convene/internal/stop"
)

var (
	// ErrClosed is returned by Router methods after Close.
	ErrClosed = errors.New("gossip: router closed")
	// ErrAlreadyJoined is returned by Join for a room that is already open
	// on this Router.
	ErrAlreadyJoined = errors.New("gossip: room already joined")
)

// maxSubscriptionsPerRPC bounds the subscription announcements accepted in
// one pubsub RPC (a peer announces all its rooms in its first RPC).
const maxSubscriptionsPerRPC = 1024

// Router is the GossipSub router of one libp2p host: it owns the pubsub
// instance, the Fetch and goodbye protocol handlers, and the open rooms
// (Topics). It is safe for concurrent use. Use one Router per host.
type Router struct {
	h      host.Host
	self   peer.ID
	cfg    Config
	log    *slog.Logger
	ps     *pubsub.PubSub
	cancel context.CancelFunc
	// shared is set for a Router attached to the app's PubSub (Attach):
	// Close then leaves that PubSub, its handlers and streams alone.
	shared bool
	stats  counters

	fetchSem chan struct{}
	leaveSem chan struct{}
	rateViol *rateViolations
	pre      *precheck
	bans     *bans
	sent     *sendTracker
	opened   *streamWatch // new GossipSub outbound streams (peers.go)
	conns    *connWatch
	live     *liveness
	extra    *extraTopics // nil: none (extra.go)

	scoreMu sync.Mutex
	scores  map[peer.ID]float64

	mu       sync.Mutex
	closed   bool
	topics   map[string]*Topic // by room ID
	streams  map[network.Stream]struct{}
	handlers sync.WaitGroup // in-flight Fetch and goodbye handlers

	stop stop.Once // Shutdown, Close
}

// New starts a GossipSub router on h with the options documented in
// docs/PROTOCOL.md: StrictSign, flood publishing, peer scoring, a
// subscription filter for room topics, and the Fetch and goodbye
// (LeaveProtocol) handlers.
// ctx bounds nothing after New returns: the Router runs until Close. The
// caller keeps ownership of h and closes it after Router.Close.
//
// A host runs one GossipSub router: if h already runs one (its GossipSub
// protocols are registered, for example by an app's own
// pubsub.NewGossipSub), New fails with ErrPubSubRunning, since a second
// router would take over the first one's streams; use Attach with the
// app's *pubsub.PubSub instead.
func New(ctx context.Context, h host.Host, cfg Config) (*Router, error) {
	return NewWithTopics(ctx, h, cfg)
}

// NewWithTopics is New with extra topics: besides room topics, its
// subscription filter admits exactly the topics named in extra (at most
// 16; none may be empty or a room topic), which are joined through
// Router.Extra with a validator of the caller's (see ExtraTopics). The repo
// names its document announcement topic here.
func NewWithTopics(ctx context.Context, h host.Host, cfg Config, extra ...string) (*Router, error) {
	if h == nil {
		return nil, errors.New("gossip: nil host")
	}
	if runsPubSub(h) {
		return nil, ErrPubSubRunning
	}
	r, err := newRouter(h, cfg)
	if err != nil {
		return nil, err
	}
	if r.extra, err = newExtraTopics(extra, r.rateViol, &r.stats); err != nil {
		return nil, err
	}
	if err := r.start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// ErrPubSubRunning is returned by New for a host that already runs a
// GossipSub (or FloodSub) router.
var ErrPubSubRunning = errors.New("gossip: the host already runs a pubsub router (an app's own GossipSub?); a second one would take over its streams: pass that *pubsub.PubSub to Attach (repo: Config.PubSub)")

// runsPubSub reports whether h has a GossipSub or FloodSub protocol handler.
func runsPubSub(h host.Host) bool {
	for _, id := range h.Mux().Protocols() {
		if id == pubsub.FloodSubID || slices.Contains(pubsub.GossipSubDefaultProtocols, id) {
			return true
		}
	}
	return false
}

// Attach runs Convene's rooms on an app's existing GossipSub router ps,
// which must run on h with the default StrictSign signature policy and the
// default message IDs (see docs/PROTOCOL.md, "Embedding"). It registers a
// validator and, if ps has peer scoring on, score parameters per room
// topic, and the Fetch and goodbye protocol handlers on h; the rest of ps
// (the app's topics, options, scoring) stays the app's. Convene's own
// GossipSub choices do not apply: without flood publishing on ps a hello
// published before the mesh forms may be lost (the join still works, by
// the direct Fetch of each connected peer), and without peer scoring on ps
// invalid or over-rate messages are dropped but cost their sender nothing.
// cfg.Params and cfg.Options configure a router Convene starts and are
// refused here. Close and Shutdown leave ps running.
func Attach(h host.Host, ps *pubsub.PubSub, cfg Config) (*Router, error) {
	switch {
	case h == nil:
		return nil, errors.New("gossip: nil host")
	case ps == nil:
		return nil, errors.New("gossip: nil pubsub")
	case cfg.Params != nil || len(cfg.Options) > 0:
		return nil, errors.New("gossip: Attach: Params and Options configure a router that New starts; set them on the app's pubsub instead")
	}
	r, err := newRouter(h, cfg)
	if err != nil {
		return nil, err
	}
	r.ps, r.cancel, r.shared = ps, func() {}, true
	r.setHandlers()
	return r, nil
}

// newRouter returns a Router with cfg validated and no pubsub yet.
func newRouter(h host.Host, cfg Config) (*Router, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	own, _ := cfg.loggers()
	r := &Router{
		h:        h,
		self:     h.ID(),
		cfg:      cfg,
		log:      own,
		fetchSem: make(chan struct{}, cfg.MaxConcurrentFetches),
		leaveSem: make(chan struct{}, cfg.MaxConcurrentFetches),
		sent:     newSendTracker(h.ID()),
		opened:   newStreamWatch(false), // start installs it as a tracer
		topics:   make(map[string]*Topic),
		streams:  make(map[network.Stream]struct{}),
		rateViol: newRateViolations(pubsub.ScoreParameterDecay(invalidDecayWindow), 4096),
	}
	r.live = newLiveness(r, cfg.AliveInterval)
	// Both exist in attached mode too: the validator bans authors and the
	// Topic counts pre-check drops; only a router Convene starts installs
	// the pre-check as pubsub's RPC inspector and the bans in its score.
	r.pre = newPrecheck(cfg.Rate, cfg.Burst, 4*cfg.maxTrackedAuthors(), r.rateViol, &r.stats)
	r.bans = newBans(cfg.InvalidBan)
	return r, nil
}

// start starts Convene's own GossipSub on r.h (New).
func (r *Router) start(ctx context.Context) error {
	cfg, h := r.cfg, r.h
	_, psLog := cfg.loggers()
	r.opened = newStreamWatch(true)
	scoreParams, thresholds := peerScoreParams(func(p peer.ID) float64 { return r.rateViol.score(p) + r.bans.score(p) })
	opts := []pubsub.Option{
		pubsub.WithGossipSubParams(*cfg.Params),
		pubsub.WithFloodPublish(true), // Options may turn it off (Config.Options)
		pubsub.WithPeerExchange(false),
		pubsub.WithSeenMessagesTTL(seenTTL),
		pubsub.WithValidateQueueSize(validateQueueSize),
		pubsub.WithAppSpecificRpcInspector(r.inspectRPC),
		pubsub.WithPeerOutboundQueueSize(128),
		pubsub.WithSubscriptionFilter(pubsub.WrapLimitSubscriptionFilter(roomFilter{extra: r.extra}, maxSubscriptionsPerRPC)),
		pubsub.WithPeerScore(scoreParams, thresholds),
		pubsub.WithPeerScoreInspect(pubsub.PeerScoreInspectFn(r.inspectScores), scoreInspectInterval),
		pubsub.WithLogger(psLog),
		pubsub.WithRawTracer(r.sent),
		pubsub.WithRawTracer(r.opened),
	}
	opts = append(opts, cfg.Options...)
	opts = append(opts, pubsub.WithMessageSignaturePolicy(pubsub.StrictSign))

	psCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ps, err := pubsub.NewGossipSub(psCtx, h, opts...)
	if err != nil {
		cancel()
		return fmt.Errorf("gossip: start GossipSub: %w", err)
	}
	r.ps, r.cancel = ps, cancel
	r.setHandlers()
	return nil
}

func (r *Router) setHandlers() {
	r.h.SetStreamHandler(FetchProtocol, r.handleFetch)
	r.h.SetStreamHandler(LeaveProtocol, r.handleLeave)
	r.h.SetStreamHandler(LeaveProtocolV1, r.handleLeave)
	r.conns = newConnWatch(r)
	r.live.start()
}

// inspectRPC is pubsub's RPC inspector: every RPC is a sign of life of its
// sender (liveness.go); then the pre-check.
func (r *Router) inspectRPC(from peer.ID, rpc *pubsub.RPC) error {
	r.live.alive(from)
	r.extra.inspect(from, rpc)
	return r.pre.inspect(from, rpc)
}

// Join opens the room's topic: it registers the validator, sets the topic's
// score parameters, subscribes, and starts the Topic's reader goroutines.
// Joining a room that is already open on this Router returns
// ErrAlreadyJoined; after Topic.Close the room may be joined again.
func (r *Router) Join(roomID string) (*Topic, error) {
	if err := checkRoomID(roomID); err != nil {
		return nil, fmt.Errorf("gossip: join %q: %w", roomID, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if _, ok := r.topics[roomID]; ok {
		return nil, fmt.Errorf("%w: %q", ErrAlreadyJoined, roomID)
	}
	t, err := r.openTopic(roomID)
	if err != nil {
		return nil, fmt.Errorf("gossip: join %q: %w", roomID, err)
	}
	r.topics[roomID] = t
	return t, nil
}

// Stats returns the sum of the counters of every Topic this Router has had,
// plus Fetch requests for rooms it is not in.
func (r *Router) Stats() Stats { return r.stats.snapshot() }

// PeerScores returns the latest GossipSub peer scores (refreshed every
// second): 0 is neutral, a negative score means penalties (below -80 the
// peer is graylisted: its RPCs are dropped unread).
func (r *Router) PeerScores() map[peer.ID]float64 {
	r.scoreMu.Lock()
	defer r.scoreMu.Unlock()
	return maps.Clone(r.scores)
}

// Peers returns the peers known to be subscribed to the room's topic that
// this host has a GossipSub stream to, whether or not this host has joined
// the room: a Publish on the room reaches each of them directly.
func (r *Router) Peers(roomID string) []peer.ID {
	if checkRoomID(roomID) != nil {
		return nil
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil
	}
	return r.ps.ListPeers(TopicName(roomID))
}

// Shutdown stops the Router gracefully: it shuts every open Topic down
// (Topic.Shutdown), then waits, bounded by ctx, until every own message
// queued in GossipSub for a peer (a goodbye) is written to that peer's
// stream, and then stops as Close does. If ctx ends first (or had ended
// already), the waits end at once and Shutdown returns ctx's error, joined
// with the Topics' close errors. Shutdown and Close stop the Router once;
// every later call of either returns the first one's result. A Close
// during a Shutdown cuts its waits short.
func (r *Router) Shutdown(ctx context.Context) error {
	return r.stop.Shutdown(ctx, r.shutdown)
}

// Close stops the Router at once: it closes every open Topic (without
// waiting for their own messages, see Topic.Close), stops serving Fetch
// and goodbyes, stops GossipSub, closes its outbound streams (so the
// peers still read what was already written) and resets its inbound ones.
// It does not close the host. It returns the Topics' close errors, joined;
// it is idempotent and returns the same result every time (see Shutdown).
func (r *Router) Close() error {
	return r.stop.Close(r.shutdown)
}

// shutdown is the Router's stop (Shutdown, Close).
func (r *Router) shutdown(ctx context.Context, graceful bool) error {
	r.mu.Lock()
	r.closed = true
	topics := make([]*Topic, 0, len(r.topics))
	for _, t := range r.topics {
		topics = append(topics, t)
	}
	streams := make([]network.Stream, 0, len(r.streams))
	for s := range r.streams {
		streams = append(streams, s)
	}
	r.mu.Unlock()

	errs := make([]error, 0, len(topics))
	for _, t := range topics {
		if graceful {
			errs = append(errs, t.Shutdown(ctx))
		} else {
			errs = append(errs, t.Close())
		}
	}
	late := false
	if graceful {
		// Every own message is routed (Topic.Shutdown); this request to
		// pubsub's event loop returns after that routing step, so every
		// peer queue it went to is counted. Then wait until written.
		if late = ctx.Err() != nil; !late {
			r.ps.ListPeers("")
			late = !r.sent.waitWritten(ctx)
		}
		if late {
			r.log.Debug("shutdown: own messages still queued when ctx ended", "err", ctx.Err())
		}
	}

	r.live.close()
	r.conns.close()
	r.h.RemoveStreamHandler(FetchProtocol)
	r.h.RemoveStreamHandler(LeaveProtocol)
	r.h.RemoveStreamHandler(LeaveProtocolV1)
	for _, s := range streams {
		_ = s.Reset()
	}
	r.handlers.Wait()
	if r.shared {
		return stop.Result(ctx, late, errs...) // the app's pubsub, its handlers and streams stay
	}

	r.cancel()
	// pubsub never unregisters its protocols and leaves its streams to
	// the host; without this its reader goroutines would live until the
	// remote side or the host closes them. Outbound streams are closed,
	// not reset: a reset makes the peer discard data it has not read
	// yet (the last RPCs, a goodbye), a close delivers it before EOF.
	// Closing also ends pubsub's goroutine reading that stream.
	gsProtos := make(map[protocol.ID]bool)
	for _, id := range pubsub.GossipSubDefaultProtocols {
		gsProtos[id] = true
		r.h.RemoveStreamHandler(id)
	}
	for _, c := range r.h.Network().Conns() {
		for _, s := range c.GetStreams() {
			if !gsProtos[s.Protocol()] {
				continue
			}
			if s.Stat().Direction == network.DirOutbound {
				_ = s.Close()
			} else {
				_ = s.Reset()
			}
		}
	}
	return stop.Result(ctx, late, errs...)
}

func (r *Router) inspectScores(m map[peer.ID]float64) {
	r.scoreMu.Lock()
	r.scores = maps.Clone(m)
	r.scoreMu.Unlock()
}

func (r *Router) topic(roomID string) *Topic {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.topics[roomID]
}

func (r *Router) removeTopic(t *Topic) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.topics[t.roomID] == t {
		delete(r.topics, t.roomID)
	}
}

// trackStream registers an inbound Fetch or goodbye stream so that Close
// can reset it and wait for its handler; it returns false once the Router
// is closed.
func (r *Router) trackStream(s network.Stream) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.streams[s] = struct{}{}
	r.handlers.Add(1)
	return true
}

func (r *Router) untrackStream(s network.Stream) {
	r.mu.Lock()
	delete(r.streams, s)
	r.mu.Unlock()
	r.handlers.Done()
}

// roomFilter accepts subscriptions to valid room topics and to the
// Router's extra topics (NewWithTopics) only, local and remote. Remote
// subscriptions to rooms we have not joined are kept so that a later Join
// knows its peers at once.
type roomFilter struct{ extra *extraTopics }

func (f roomFilter) CanSubscribe(topic string) bool {
	_, ok := roomIDFromTopic(topic)
	return ok || f.extra.admits(topic)
}

func (f roomFilter) FilterIncomingSubscriptions(_ peer.ID, subs []*pb.RPC_SubOpts) ([]*pb.RPC_SubOpts, error) {
	return pubsub.FilterSubscriptions(subs, f.CanSubscribe), nil
}
