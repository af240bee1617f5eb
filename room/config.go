package room

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode"
	"unicode/utf8"

	golog "github.com/ipfs/go-log/v2"

	"github.com/convene-p2p/convene/ephemeral"
)

// MaxIDLen is the longest room ID accepted, in bytes.
const MaxIDLen = 128

// ErrInvalidID is returned (wrapped, with the reason) for a room ID that
// ValidateID rejects.
var ErrInvalidID = errors.New("room: invalid room id")

// ValidateID checks a room ID: 1 to MaxIDLen bytes of valid UTF-8, with no
// control characters and no '/'. The error wraps ErrInvalidID and says why.
func ValidateID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidID)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidID, len(id), MaxIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w %q: not valid UTF-8", ErrInvalidID, id)
	}
	for _, c := range id {
		if c == '/' {
			return fmt.Errorf("%w %q: contains '/'", ErrInvalidID, id)
		}
		if unicode.IsControl(c) {
			return fmt.Errorf("%w %q: contains control character %U", ErrInvalidID, id, c)
		}
	}
	return nil
}

// Default timings, used by DefaultConfig and for zero Config fields.
const (
	DefaultTimeout         = 30 * time.Second
	DefaultPublishInterval = 50 * time.Millisecond
)

// Config tunes one room. The zero value is valid and means DefaultConfig.
type Config struct {
	// Timeout is how long a remote member may stay silent before it is
	// dropped (reason timeout), measured on the local clock from the last
	// message heard from it. Zero means DefaultTimeout (30s).
	Timeout time.Duration
	// HeartbeatInterval is the period of the local peer's heartbeat; each
	// period is jittered by ±10%. Zero means Timeout/3. It must be shorter
	// than Timeout.
	HeartbeatInterval time.Duration
	// PublishInterval paces local presence writes: deltas go out at one per
	// PublishInterval in a sustained burst (a token bucket of capacity 2, so
	// at most 2 + T/PublishInterval in any span T, and never two closer than
	// PublishInterval/2), and the last value written is always sent
	// (trailing edge). An app writing at about this rate has each write sent
	// at once. It also bounds how often early heartbeats
	// (answers to newcomers) are sent. Zero means DefaultPublishInterval
	// (50ms). It must be shorter than HeartbeatInterval.
	PublishInterval time.Duration
	// Linger is how long the room stays alive after Leave (status Left,
	// still receiving, and able to Rejoin) before it is destroyed. Zero
	// means Timeout; a negative value destroys the room as soon as the
	// goodbye is handed to the network.
	Linger time.Duration
	// Limits bound the presence store (key length, value size, keys per
	// peer, peers per room including self). Zero fields take the
	// ephemeral package's defaults, or, over a network that checks limits
	// at every relay (a roomnet.Checker, such as the gossip package's
	// topic), the network's: a wire limit set here must equal the
	// network's, and New refuses limits whose full state a heartbeat could
	// not carry. So a write that Set accepts is one every relay accepts.
	// MaxPeers is local.
	Limits ephemeral.Limits
	// Logger receives the room's diagnostics. Nil means a go-log backed
	// logger named "convene/room", quiet unless GOLOG_LOG_LEVEL says
	// otherwise.
	Logger *slog.Logger
	// Clock is where the room reads time (tests, simulations). Nil means
	// the real clock, steady against wall-clock jumps.
	Clock Clock
	// Seed fixes the seed of the room's jitter source (heartbeat jitter,
	// reproducible tests). Zero means a random seed.
	Seed uint64
	// WatchBuffer is how many events each Watcher buffers before newer
	// ones are dropped (see Watcher). Zero means DefaultWatchBuffer (256).
	WatchBuffer int
}

// DefaultConfig returns the production defaults: Timeout 30s, heartbeat
// every 10s, publish coalescing 50ms, linger 30s.
func DefaultConfig() Config {
	return Config{
		Timeout:           DefaultTimeout,
		HeartbeatInterval: DefaultTimeout / 3,
		PublishInterval:   DefaultPublishInterval,
		Linger:            DefaultTimeout,
	}
}

// LocalConfig returns short timings for tests and demos: Timeout 3s,
// heartbeat every 1s, publish coalescing 20ms, linger 3s.
func LocalConfig() Config {
	return Config{
		Timeout:           3 * time.Second,
		HeartbeatInterval: time.Second,
		PublishInterval:   20 * time.Millisecond,
		Linger:            3 * time.Second,
	}
}

// validate fills defaults and rejects nonsense. It returns the completed
// copy.
func (c Config) validate() (Config, error) {
	if c.Timeout < 0 || c.HeartbeatInterval < 0 || c.PublishInterval < 0 {
		return c, errors.New("room: config: negative duration")
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = c.Timeout / 3
	}
	if c.PublishInterval == 0 {
		c.PublishInterval = min(DefaultPublishInterval, c.HeartbeatInterval/2)
	}
	if c.Linger == 0 {
		c.Linger = c.Timeout
	}
	if c.HeartbeatInterval >= c.Timeout {
		return c, fmt.Errorf("room: config: HeartbeatInterval %v must be shorter than Timeout %v", c.HeartbeatInterval, c.Timeout)
	}
	if c.PublishInterval <= 0 || c.PublishInterval >= c.HeartbeatInterval {
		return c, fmt.Errorf("room: config: PublishInterval %v must be positive and shorter than HeartbeatInterval %v", c.PublishInterval, c.HeartbeatInterval)
	}
	if c.Limits.MaxKeyLen < 0 || c.Limits.MaxValueSize < 0 || c.Limits.MaxKeysPerPeer < 0 || c.Limits.MaxPeers < 0 {
		return c, errors.New("room: config: negative limit")
	}
	if c.WatchBuffer < 0 {
		return c, fmt.Errorf("room: config: negative WatchBuffer %d", c.WatchBuffer)
	}
	if c.WatchBuffer == 0 {
		c.WatchBuffer = DefaultWatchBuffer
	}
	if c.Logger == nil {
		c.Logger = defaultLogger()
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	return c, nil
}

// agreeLimits makes the room's presence limits those the network checks at
// every relay (see roomnet.Checker): each zero wire limit takes the
// network's value, and one that differs is an error.
func (c Config) agreeLimits(net ephemeral.Limits) (Config, error) {
	lim, err := c.Limits.Merge(net)
	if err != nil {
		return c, fmt.Errorf("room: config: Limits differ from those the network checks at every relay, so writes the room accepted would reach nobody; set them once, on the network (repo: Config.Gossip.Limits): %w", err)
	}
	c.Limits = lim
	return c, nil
}

func defaultLogger() *slog.Logger {
	return slog.New(golog.SlogHandler()).With("logger", "convene/room")
}

// probeTimeout bounds the liveness probe sent after a PeerDown hint.
func (c Config) probeTimeout() time.Duration { return min(time.Second, c.Timeout) }

// fetchTimeout bounds a join-snapshot fetch.
func (c Config) fetchTimeout() time.Duration { return min(5*time.Second, c.Timeout) }

// probeGrace is how long after a probe starts messages from the probed
// peer do not count as proof of life: they may have been queued before the
// PeerDown hint and relayed late by other members.
func (c Config) probeGrace() time.Duration { return min(250*time.Millisecond, c.quarantine()/4) }

// quarantine is how long after a failed probe removed a member its messages
// from the same epoch are not trusted on their own (they may be in flight
// from a dead peer); such a message triggers a new probe instead.
func (c Config) quarantine() time.Duration { return min(time.Second, c.Timeout) }

// goneRetention is how long the machine remembers a removed member's epoch
// so that stale or replayed messages from that incarnation cannot bring it
// back. It outlives GossipSub's default 2-minute seen-message cache.
func (c Config) goneRetention() time.Duration { return max(2*c.Timeout, 3*time.Minute) }

// Clock is the only way a Room reads time (Config.Clock). Nil means the
// real clock.
// Network timeouts (roomnet.Network's Fetch and Publish) use context
// deadlines and so the runtime's clock, not this one.
type Clock interface {
	Now() time.Time
	// After is like time.After.
	After(d time.Duration) <-chan time.Time
}

// realClock is the default Clock. Its Now is steady: the wall time at
// process start plus the monotonic time elapsed since, so a wall-clock jump
// (NTP, a suspended laptop's resync) moves no deadline. The presence store
// compares times by their wall reading (UnixNano), which this keeps steady.
type realClock struct{}

// clockBase is read once; Now is derived from it by monotonic elapsed time.
var clockBase = time.Now()

func (realClock) Now() time.Time                         { return clockBase.Add(time.Since(clockBase)) }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// DefaultWatchBuffer is how many events a Watcher buffers by default.
const DefaultWatchBuffer = 256
