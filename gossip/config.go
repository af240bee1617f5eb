package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	golog "github.com/ipfs/go-log/v2"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/ephemeral"
)

// Defaults for the zero fields of Config.
const (
	DefaultMaxMessageSize       = 64 << 10
	DefaultRate                 = 100
	DefaultBurst                = 200
	DefaultQueueSize            = 1024
	DefaultFetchTimeout         = 5 * time.Second
	DefaultMaxConcurrentFetches = 32
	DefaultInvalidBan           = 10 * time.Second

	// maxMessageSizeLimit keeps an envelope, with the pubsub message and RPC
	// framing around it, below pubsub's own 1 MiB frame limit.
	maxMessageSizeLimit = 1<<20 - 4<<10
	// seenTTL is how long pubsub remembers a message ID to drop duplicates.
	seenTTL = 30 * time.Second
	// scoreInspectInterval is how often PeerScores is refreshed.
	scoreInspectInterval = time.Second
)

// Config configures a Router. The zero value is ready to use; every zero
// field takes the default documented on it. Every peer of a room should use
// the same MaxMessageSize, Rate, Burst and Limits: a peer whose limits are
// larger than a receiver's gets its messages rejected and is penalised.
type Config struct {
	// Params are the GossipSub router parameters. Nil means
	// GossipSubParams(), the choices for presence documented in
	// docs/PROTOCOL.md (250 ms heartbeat, default mesh degrees).
	Params *pubsub.GossipSubParams

	// MaxMessageSize bounds one encoded envelope (the pubsub message data),
	// in bytes, for published, received and fetched messages. Zero means
	// DefaultMaxMessageSize (64 KiB); at most 1 MiB - 4 KiB.
	MaxMessageSize int

	// Rate is the number of messages per second one author may publish in
	// one room (token bucket per signer per topic, checked at every relay),
	// and Burst the bucket size. Zero means DefaultRate (100/s) and
	// DefaultBurst (200). The room layer publishes at most one coalesced
	// delta per PublishInterval (20/s by default, 50/s with
	// room.LocalConfig) plus at most as many early heartbeats,
	// well inside the default. Over-rate
	// messages are dropped; an author sending them directly is penalised
	// (peer score) until it is graylisted.
	Rate  float64
	Burst int

	// Limits bound the presence state carried in hello, heartbeat and delta
	// messages; validators check them with ephemeral.Verify. Zero fields take
	// ephemeral's defaults. A room over a Topic takes these limits (the
	// Topic is a roomnet.Checker), and Join of a room whose full state would
	// not fit in MaxMessageSize fails there.
	Limits ephemeral.Limits

	// QueueSize bounds the inbound messages buffered per room for Next. When
	// the consumer lags and the queue is full, new messages are dropped and
	// counted in Stats.Dropped. Zero means DefaultQueueSize (1024).
	QueueSize int

	// FetchTimeout bounds one Fetch exchange, on the client (unless the
	// caller's context ends earlier) and on the server, where the room has
	// FetchTimeout/2 to answer the request (an EventFetch) before it is
	// refused as busy. Zero means DefaultFetchTimeout (5 s).
	FetchTimeout time.Duration

	// MaxConcurrentFetches bounds the Fetch requests this peer serves at
	// once; more are answered "busy". The same bound applies, separately,
	// to direct goodbye streams (LeaveProtocol). Zero means
	// DefaultMaxConcurrentFetches.
	MaxConcurrentFetches int

	// InvalidBan is how long an author is banned for its first rejected
	// (malformed, oversized or wrongly attributed) message; each further
	// one doubles it, up to 10 minutes (bans.go, docs/PROTOCOL.md 2.6.2).
	// Zero means DefaultInvalidBan (10 s).
	InvalidBan time.Duration

	// AliveInterval is how long a peer this Router shares a joined room
	// with may send nothing before its connections are checked (a
	// multistream negotiation of AliveProtocol, 600 ms each; liveness.go).
	// A peer that misses two checks in a row, with nothing else received
	// from it meanwhile (a frozen process whose connections stay open), is
	// reported to its rooms as EventPeerDown, which makes them probe it
	// and drop it if that fails too. Zero means DefaultAliveInterval
	// (750 ms); negative turns the checks off (a frozen peer is then
	// dropped only at the room's Timeout).
	AliveInterval time.Duration

	// Options are passed to pubsub.NewGossipSub after Convene's own, so they
	// may override tunables (e.g. WithDirectPeers, WithRawTracer,
	// WithEventTracer, WithValidateQueueSize). Flood publishing is on
	// (docs/PROTOCOL.md 2.6.1): the join and goodbye guarantees of 2.7.1
	// rely on it, and pubsub.WithFloodPublish(false) here gives them up (a
	// message published before the mesh forms is then lost). The signature policy is
	// always StrictSign (re-applied last); WithPeerScore,
	// WithPeerScoreInspect, WithSubscriptionFilter and
	// WithAppSpecificRpcInspector (the pre-check, precheck.go) must not be
	// passed.
	Options []pubsub.Option

	// Logger receives the logs of this package and of pubsub, each record
	// tagged "logger": "convene/gossip" or "pubsub". Nil means the go-log
	// subsystems of those names (quiet by default, GOLOG_LOG_LEVEL
	// applies).
	Logger *slog.Logger
}

// GossipSubParams returns the GossipSub parameters Convene uses for presence
// (docs/PROTOCOL.md explains each choice): a 250 ms heartbeat, so meshes form
// within a quarter second of a subscription; a smaller mesh (D=4, Dlo=3,
// Dhi=5), because flood publishing already gives every directly connected
// member its first copy and mesh forwarding mostly adds duplicates (a mesh
// is pruned back to D once it grows past Dhi, so Dhi bounds the copies a
// member forwards); lighter
// gossip (IHAVE to max(3, 10% of non-mesh peers), each message advertised in
// one heartbeat only), because presence heals with the next heartbeat; and a
// 2 s unsubscribe backoff, because rooms are left and rejoined often.
func GossipSubParams() pubsub.GossipSubParams {
	p := pubsub.DefaultGossipSubParams()
	p.HeartbeatInterval = 250 * time.Millisecond
	p.HeartbeatInitialDelay = 50 * time.Millisecond
	p.D, p.Dlo, p.Dhi, p.Dscore, p.Dout = 4, 3, 5, 2, 1
	p.Dlazy, p.GossipFactor, p.HistoryGossip = 3, 0.1, 1
	p.UnsubscribeBackoff = 2 * time.Second
	return p
}

// validate returns cfg with defaults filled in, or an error for nonsense.
func (cfg Config) validate() (Config, error) {
	if cfg.Params == nil {
		p := GossipSubParams()
		cfg.Params = &p
	} else {
		p := *cfg.Params
		cfg.Params = &p
	}
	if cfg.Params.HeartbeatInterval <= 0 {
		return cfg, errors.New("gossip: config: Params.HeartbeatInterval must be positive")
	}
	switch {
	case cfg.MaxMessageSize == 0:
		cfg.MaxMessageSize = DefaultMaxMessageSize
	case cfg.MaxMessageSize < 64 || cfg.MaxMessageSize > maxMessageSizeLimit:
		return cfg, fmt.Errorf("gossip: config: MaxMessageSize %d out of range [64, %d]", cfg.MaxMessageSize, maxMessageSizeLimit)
	}
	switch {
	case cfg.Rate == 0:
		cfg.Rate = DefaultRate
	case cfg.Rate < 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0):
		return cfg, fmt.Errorf("gossip: config: Rate %v must be positive", cfg.Rate)
	}
	for _, f := range []error{
		orDefault(&cfg.Burst, DefaultBurst, "Burst"),
		orDefault(&cfg.QueueSize, DefaultQueueSize, "QueueSize"),
		orDefault(&cfg.FetchTimeout, DefaultFetchTimeout, "FetchTimeout"),
		orDefault(&cfg.MaxConcurrentFetches, DefaultMaxConcurrentFetches, "MaxConcurrentFetches"),
		orDefault(&cfg.InvalidBan, DefaultInvalidBan, "InvalidBan"),
	} {
		if f != nil {
			return cfg, f
		}
	}
	if cfg.AliveInterval == 0 {
		cfg.AliveInterval = DefaultAliveInterval
	}
	if cfg.Limits.MaxKeyLen < 0 || cfg.Limits.MaxValueSize < 0 || cfg.Limits.MaxKeysPerPeer < 0 || cfg.Limits.MaxPeers < 0 {
		return cfg, errors.New("gossip: config: negative Limits")
	}
	return cfg, nil
}

// orDefault sets a zero *v to def and rejects a negative one.
func orDefault[T int | time.Duration](v *T, def T, name string) error {
	switch {
	case *v == 0:
		*v = def
	case *v < 0:
		return fmt.Errorf("gossip: config: negative %s %v", name, *v)
	}
	return nil
}

// maxTrackedAuthors bounds the rate limiter's per-author state in one room.
func (cfg Config) maxTrackedAuthors() int {
	n := cfg.Limits.MaxPeers
	if n == 0 {
		n = 1024 // ephemeral's default
	}
	return 4 * n
}

// loggers returns the logger for this package and the one for pubsub.
func (cfg Config) loggers() (own, ps *slog.Logger) {
	if cfg.Logger != nil {
		return cfg.Logger.With("logger", "convene/gossip"), cfg.Logger.With("logger", "pubsub")
	}
	h := golog.SlogHandler()
	return slog.New(h).With("logger", "convene/gossip"), slog.New(h).With("logger", "pubsub")
}

// Peer-score thresholds (docs/PROTOCOL.md, "Peer scoring"). A peer below
// gossipThreshold gets no gossip from us, below publishThreshold none of our
// flood publishes, below graylistThreshold its RPCs are dropped unread.
const (
	gossipThreshold    = -10
	publishThreshold   = -50
	graylistThreshold  = -80
	invalidWeight      = -10 // × (invalid messages)²: the 3rd graylists
	invalidDecayWindow = time.Minute
	// rateWeight × (over-rate messages sent to us directly)², through the
	// application-specific score P5, decaying like P4.
	rateWeight = -10
)

// peerScoreParams returns the router-wide score parameters; appScore is P5
// (see rateViolations).
func peerScoreParams(appScore func(peer.ID) float64) (*pubsub.PeerScoreParams, *pubsub.PeerScoreThresholds) {
	params := &pubsub.PeerScoreParams{
		Topics:            map[string]*pubsub.TopicScoreParams{}, // room topics are added by Join
		TopicScoreCap:     10,
		AppSpecificScore:  appScore,
		AppSpecificWeight: 1,
		// P6 (IP colocation) off: many honest peers of one room often share
		// an address (one LAN behind NAT, loopback tests).
		IPColocationFactorWeight:  0,
		BehaviourPenaltyWeight:    -10,
		BehaviourPenaltyThreshold: 6,
		BehaviourPenaltyDecay:     pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:             pubsub.DefaultDecayInterval,
		DecayToZero:               pubsub.DefaultDecayToZero,
		RetainScore:               5 * time.Minute,
		SeenMsgTTL:                seenTTL,
	}
	thresholds := &pubsub.PeerScoreThresholds{
		GossipThreshold:             gossipThreshold,
		PublishThreshold:            publishThreshold,
		GraylistThreshold:           graylistThreshold,
		AcceptPXThreshold:           100, // peer exchange is off anyway
		OpportunisticGraftThreshold: 1,
	}
	return params, thresholds
}

// topicScoreParams are the score parameters of every room topic.
func topicScoreParams() *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		TopicWeight: 1,
		// P1: +0.01 per second in the mesh, up to +3. The quantum must not be
		// zero (divide by zero in pubsub's scorer).
		TimeInMeshWeight:  0.01,
		TimeInMeshQuantum: time.Second,
		TimeInMeshCap:     300,
		// P2: +0.5 per first delivery, decaying over a minute, up to +10.
		FirstMessageDeliveriesWeight: 0.5,
		FirstMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(time.Minute),
		FirstMessageDeliveriesCap:    20,
		// P3/P3b (mesh delivery rate) off: an idle room carries only a
		// heartbeat per member every few seconds, so no delivery-rate floor
		// fits every room.
		MeshMessageDeliveriesWeight: 0,
		MeshFailurePenaltyWeight:    0,
		// P4: invalid (rejected) messages, -10 × count², decaying to 1% over
		// a minute: three rejected messages in a row graylist the sender.
		InvalidMessageDeliveriesWeight: invalidWeight,
		InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(invalidDecayWindow),
	}
}
