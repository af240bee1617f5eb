package ephemeral

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
	"unicode/utf8"
)

// PeerID is a peer's identity as bytes (a libp2p peer ID's raw bytes); opaque here.
// A valid PeerID is 1 to 128 bytes long.
type PeerID string

// Version orders one author's writes: Epoch is new (greater) every time the author starts/joins,
// Counter increases with every local write within an epoch.
type Version struct{ Epoch, Counter uint64 }

// Less reports whether v orders before o: a lower epoch, or the same epoch and a lower counter.
func (v Version) Less(o Version) bool {
	return v.Epoch < o.Epoch || (v.Epoch == o.Epoch && v.Counter < o.Counter)
}

// Cause says why a Change happened.
type Cause uint8

// The causes of a Change.
const (
	CauseLocal   Cause = iota + 1 // a local Set/Delete
	CauseRemote                   // an applied remote update
	CauseTimeout                  // liveness timeout or per-key TTL
	CauseLeave                    // the peer left (Remove with CauseLeave)
)

// String returns "local", "remote", "timeout" or "leave" ("Cause(n)" for anything else).
func (c Cause) String() string {
	switch c {
	case CauseLocal:
		return "local"
	case CauseRemote:
		return "remote"
	case CauseTimeout:
		return "timeout"
	case CauseLeave:
		return "leave"
	}
	return fmt.Sprintf("Cause(%d)", uint8(c))
}

// Change describes what one operation did to one peer's state. Keys are sorted.
//
// A key is Added when it had no value before, Updated when a new version replaced a value
// (even if the bytes are equal), and Removed when its value went away (delete, epoch
// replacement, snapshot, TTL, timeout or leave).
type Change struct {
	Peer                    PeerID
	Added, Updated, Removed []string
	Cause                   Cause
	Gone                    bool // the peer itself was dropped from the store (timeout or leave)
}

// Empty reports whether c has no keys and is not Gone.
func (c Change) Empty() bool {
	return len(c.Added) == 0 && len(c.Updated) == 0 && len(c.Removed) == 0 && !c.Gone
}

// Limits bound what one store accepts. Zero fields take the defaults shown; negative
// fields are rejected by New and Verify. Every peer of a room should use the same limits:
// a receiver with smaller limits than an author rejects that author's data.
type Limits struct {
	MaxKeyLen      int // bytes of one key; default 64
	MaxValueSize   int // bytes of one value; default 1024
	MaxKeysPerPeer int // live keys per peer; default 32
	MaxPeers       int // peers per store, self included; default 1024
}

const (
	defaultMaxKeyLen      = 64
	defaultMaxValueSize   = 1024
	defaultMaxKeysPerPeer = 32
	defaultMaxPeers       = 1024
	defaultTimeout        = 30 * time.Second

	// maxPeerIDLen bounds a peer ID (libp2p peer IDs are 34 to 38 bytes in practice).
	maxPeerIDLen = 128
)

// WithDefaults returns l with its zero fields set to the defaults documented on Limits;
// a negative field is an error.
func (l Limits) WithDefaults() (Limits, error) {
	if l.MaxKeyLen < 0 || l.MaxValueSize < 0 || l.MaxKeysPerPeer < 0 || l.MaxPeers < 0 {
		return l, fmt.Errorf("ephemeral: negative limit in %+v", l)
	}
	if l.MaxKeyLen == 0 {
		l.MaxKeyLen = defaultMaxKeyLen
	}
	if l.MaxValueSize == 0 {
		l.MaxValueSize = defaultMaxValueSize
	}
	if l.MaxKeysPerPeer == 0 {
		l.MaxKeysPerPeer = defaultMaxKeysPerPeer
	}
	if l.MaxPeers == 0 {
		l.MaxPeers = defaultMaxPeers
	}
	return l, nil
}

// Merge returns l with each zero field of those that bound what the wire carries
// (MaxKeyLen, MaxValueSize, MaxKeysPerPeer) taken from other; MaxPeers is local to a
// store and stays l's. A field set in both to different values is an error naming it.
// Layers that check the same data (a room's store and the relays' validators) use it to
// keep one set of limits.
func (l Limits) Merge(other Limits) (Limits, error) {
	for _, f := range []struct {
		name  string
		own   *int
		other int
	}{
		{"MaxKeyLen", &l.MaxKeyLen, other.MaxKeyLen},
		{"MaxValueSize", &l.MaxValueSize, other.MaxValueSize},
		{"MaxKeysPerPeer", &l.MaxKeysPerPeer, other.MaxKeysPerPeer},
	} {
		switch {
		case f.other == 0:
		case *f.own == 0:
			*f.own = f.other
		case *f.own != f.other:
			return l, fmt.Errorf("ephemeral: limits differ: %s is %d in one and %d in the other", f.name, *f.own, f.other)
		}
	}
	return l, nil
}

// Config configures a Store. The zero value is not usable: Self and Epoch are required.
type Config struct {
	Self    PeerID        // required: the local peer (1 to 128 bytes)
	Epoch   uint64        // required, > 0; the caller makes it grow across restarts (e.g. unix ms at start)
	Timeout time.Duration // remote liveness timeout; zero means 30s; negative is rejected
	Limits  Limits        // zero fields take the defaults documented on Limits
}

// validate fills defaults and rejects nonsense.
func (c Config) validate() (Config, error) {
	if err := checkPeerID(c.Self); err != nil {
		return c, fmt.Errorf("ephemeral: Config.Self: %w", err)
	}
	if c.Epoch == 0 {
		return c, errors.New("ephemeral: Config.Epoch must be > 0")
	}
	if c.Timeout < 0 {
		return c, fmt.Errorf("ephemeral: negative Config.Timeout %v", c.Timeout)
	}
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	lim, err := c.Limits.WithDefaults()
	if err != nil {
		return c, err
	}
	c.Limits = lim
	return c, nil
}

func checkPeerID(p PeerID) error {
	if len(p) == 0 || len(p) > maxPeerIDLen {
		return fmt.Errorf("invalid peer ID length %d (want 1 to %d bytes)", len(p), maxPeerIDLen)
	}
	return nil
}

// Errors. Limit errors come from local writes (Set, SetTTL) and from Apply; decoders
// return ErrTooLarge for oversized input, wrapping the matching limit error where there is one
// (so errors.Is(err, ErrKeyTooLong) also holds for a decoded key that is too long).
var (
	ErrKeyTooLong    = errors.New("ephemeral: key too long")
	ErrValueTooLarge = errors.New("ephemeral: value too large")
	ErrTooManyKeys   = errors.New("ephemeral: too many keys")
	ErrTooManyPeers  = errors.New("ephemeral: too many peers")

	// ErrForeignPeer: Apply got data describing a peer other than its author.
	ErrForeignPeer = errors.New("ephemeral: data describes a peer other than its author")
	// ErrMalformed: decoders got malformed or truncated input, trailing bytes, an unknown
	// format version or kind, or a key that is not valid UTF-8.
	ErrMalformed = errors.New("ephemeral: malformed data")
	// ErrTooLarge: decoders got counts or lengths beyond the limits (checked before allocating).
	ErrTooLarge = errors.New("ephemeral: data too large")
)

// entry is one key of one peer. Tombstones (deleted keys) keep their version.
type entry struct {
	key      string
	value    []byte
	counter  uint64
	deadline nanos // TTL deadline on this store's clock; zero: no TTL
	tomb     bool
	dirty    bool // self only: changed since the last EncodeDelta
}

// peerState is what the store holds about one peer.
type peerState struct {
	id       PeerID
	epoch    uint64    // 0: known only through Heard
	high     uint64    // highest counter seen in epoch
	complete uint64    // remote: the state is known complete through this counter (last snapshot)
	floor    uint64    // remote: entries of absent keys with counter <= floor are stale
	minEpoch uint64    // data from an epoch below this is ignored (set after a leave)
	heard    nanos     // last heard on this store's clock; zero: never (self)
	ttlMin   time.Time // earliest TTL deadline among live entries (from nanos.time); zero: none
	entries  []entry   // sorted by key; tombstones included
	live     int       // entries that are not tombstones
	tombs    int       // tombstones
}

// find returns the index of key in p.entries, or where it would be inserted.
func (p *peerState) find(key string) (int, bool) {
	lo, hi := 0, len(p.entries)
	for lo < hi {
		h := int(uint(lo+hi) >> 1)
		if p.entries[h].key < key {
			lo = h + 1
		} else {
			hi = h
		}
	}
	return lo, lo < len(p.entries) && p.entries[lo].key == key
}

// recount recomputes live and tombs from the entries.
func (p *peerState) recount() {
	p.live, p.tombs = 0, 0
	for i := range p.entries {
		if p.entries[i].tomb {
			p.tombs++
		} else {
			p.live++
		}
	}
}

// earliestTTL returns the earliest TTL deadline among live entries (zero: none).
func (p *peerState) earliestTTL() time.Time {
	var t nanos
	for i := range p.entries {
		e := &p.entries[i]
		if !e.tomb && e.deadline != 0 && (t == 0 || e.deadline < t) {
			t = e.deadline
		}
	}
	return t.time()
}

// ttlMinN returns p.ttlMin on the store's clock (zero: none). ttlMin always comes from
// nanos.time, so the conversion is exact.
func (p *peerState) ttlMinN() nanos {
	if p.ttlMin.IsZero() {
		return 0
	}
	return nanos(p.ttlMin.UnixNano())
}

// nanos is a time on the store's clock: the wall-clock reading of a now passed in, as unix
// nanoseconds, clamped to what an int64 holds (years 1678 to 2262). Zero means none.
//
// Every comparison of times inside the store is a comparison of nanos: it uses the wall
// clock and ignores monotonic clock readings. For times without a monotonic reading (or a
// wall clock that does not jump) that is exactly time.Time's Before/After. The instant
// 1970-01-01T00:00:00Z itself is moved to one nanosecond later, since zero means none.
type nanos int64

const (
	minNanosSec = math.MinInt64 / 1_000_000_000   // earliest unix second whose nanos fit
	maxNanosSec = math.MaxInt64/1_000_000_000 - 1 // latest unix second whose nanos surely fit
)

// toNanos converts a now passed in to the store's clock.
func toNanos(t time.Time) nanos {
	sec := t.Unix()
	switch {
	case sec < minNanosSec:
		return math.MinInt64
	case sec > maxNanosSec:
		return math.MaxInt64
	}
	if n := nanos(t.UnixNano()); n != 0 {
		return n
	}
	return 1
}

// add returns n+d (d >= 0), saturating at the largest representable time.
func (n nanos) add(d time.Duration) nanos {
	r := n + nanos(d)
	if r < n {
		return math.MaxInt64
	}
	if r == 0 {
		return 1
	}
	return r
}

// time returns n as a UTC time.Time (the zero time for zero).
func (n nanos) time() time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(n)).UTC()
}

// IsZero reports whether n is none. Add returns the time d after n (saturating) as a
// time.Time. The store itself uses == 0 and add; these two mirror time.Time's methods for
// the tests' invariant checks.
func (n nanos) IsZero() bool                  { return n == 0 }
func (n nanos) Add(d time.Duration) time.Time { return n.add(d).time() }

// Store holds the presence state of one room: for every known peer, its keys and values,
// their versions, and when the peer was last heard.
//
// A Store is pure: it starts no goroutines, does no I/O and never reads a clock; time is
// always an argument. It is not safe for concurrent use: one owner (e.g. the room's loop)
// calls all its methods.
type Store struct {
	self    PeerID
	timeout time.Duration
	lim     Limits
	now     nanos // the latest now passed to any method: the clock of reads and encoders

	me    *peerState
	peers map[string]*peerState // self included
	// peersCap is the room the peers map was last made with (0: grown by itself).
	peersCap int
	gone     departures
	dirty    int // self entries changed since the last EncodeDelta

	// A lower bound of every deadline (peer timeouts and TTLs). lbSet is false only when
	// there is no deadline. lbExact says lb is itself a deadline. lb is lbN as a time.Time.
	lb      time.Time
	lbN     nanos
	lbSet   bool
	lbExact bool

	intern internTable // recently seen keys of remote entries

	// Scratch buffers reused across calls.
	dec     decoded
	chg     changeScratch
	entBuf  []entry
	snapBuf []*peerState
}

// New returns an empty store for cfg.Self. See Config for the required fields.
func New(cfg Config) (*Store, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	s := &Store{
		self:    cfg.Self,
		timeout: cfg.Timeout,
		lim:     cfg.Limits,
		peers:   make(map[string]*peerState),
		lbExact: true,
		now:     math.MinInt64,
	}
	s.gone.init(cfg.Limits.MaxPeers)
	s.me = &peerState{id: cfg.Self, epoch: cfg.Epoch, minEpoch: cfg.Epoch}
	s.peers[string(cfg.Self)] = s.me
	return s, nil
}

// observe advances the store's clock: the latest now seen.
func (s *Store) observe(now nanos) {
	if now > s.now {
		s.now = now
	}
}

// Set sets key to value for the local peer. It bumps the local counter and returns a
// Change with the key Added or Updated (CauseLocal). The store keeps its own copy of value.
// Errors: ErrKeyTooLong, ErrValueTooLarge, ErrTooManyKeys, or a key that is not valid UTF-8.
func (s *Store) Set(now time.Time, key string, value []byte) (Change, error) {
	return s.set(now, key, value, 0)
}

// SetTTL is Set for a key that vanishes ttl after the write, at the author and at every
// receiver (on the receiver's clock, from receipt). ttl must be positive. Set or SetTTL
// on the key again replaces the TTL.
func (s *Store) SetTTL(now time.Time, key string, value []byte, ttl time.Duration) (Change, error) {
	if ttl <= 0 {
		return Change{}, fmt.Errorf("ephemeral: SetTTL %q: ttl must be positive, got %v", key, ttl)
	}
	return s.set(now, key, value, ttl)
}

func (s *Store) checkKey(key string) error {
	if len(key) > s.lim.MaxKeyLen {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrKeyTooLong, len(key), s.lim.MaxKeyLen)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("ephemeral: key %q is not valid UTF-8", key)
	}
	return nil
}

func (s *Store) set(now time.Time, key string, value []byte, ttl time.Duration) (Change, error) {
	if err := s.checkKey(key); err != nil {
		return Change{}, err
	}
	if len(value) > s.lim.MaxValueSize {
		return Change{}, fmt.Errorf("%w: %d bytes for key %q (limit %d)", ErrValueTooLarge, len(value), key, s.lim.MaxValueSize)
	}
	p := s.me
	i, found := p.find(key)
	wasLive := found && !p.entries[i].tomb
	if !wasLive && p.live >= s.lim.MaxKeysPerPeer {
		return Change{}, fmt.Errorf("%w: setting %q would make %d live keys (limit %d)", ErrTooManyKeys, key, p.live+1, s.lim.MaxKeysPerPeer)
	}
	n := toNanos(now)
	s.observe(n)
	if !found {
		p.entries = slices.Insert(p.entries, i, entry{key: key})
	}
	e := &p.entries[i]
	hadTTL := e.deadline != 0
	p.high++
	e.counter = p.high
	e.value = append(e.value[:0], value...)
	if e.tomb {
		e.tomb = false
		p.tombs--
	}
	if !wasLive {
		p.live++
	}
	if !e.dirty {
		e.dirty = true
		s.dirty++
	}
	e.deadline = 0
	if ttl > 0 {
		e.deadline = n.add(ttl)
	}
	if hadTTL || ttl > 0 {
		s.retime(p)
	}
	if wasLive {
		return Change{Peer: s.self, Updated: []string{key}, Cause: CauseLocal}, nil
	}
	return Change{Peer: s.self, Added: []string{key}, Cause: CauseLocal}, nil
}

// Delete removes key for the local peer, leaving a versioned tombstone that the next
// delta carries. Deleting a missing key is a no-op (empty Change). The error is always nil;
// it is there for symmetry with Set.
func (s *Store) Delete(now time.Time, key string) (Change, error) {
	p := s.me
	i, found := p.find(key)
	if !found || p.entries[i].tomb {
		return Change{}, nil
	}
	s.observe(toNanos(now))
	e := &p.entries[i]
	hadTTL := e.deadline != 0
	p.high++
	e.counter = p.high
	e.tomb = true
	e.value = nil
	e.deadline = 0
	p.live--
	p.tombs++
	if !e.dirty {
		e.dirty = true
		s.dirty++
	}
	// Bound the pending tombstones: beyond MaxKeysPerPeer the oldest is not sent; receivers
	// drop that key at the next snapshot (absent, with a counter below the snapshot's).
	s.capTombs(p)
	if hadTTL {
		s.retime(p)
	}
	return Change{Peer: s.self, Removed: []string{key}, Cause: CauseLocal}, nil
}

// oldestTomb returns the index of the tombstone with the lowest counter (there must be one).
func oldestTomb(es []entry) int {
	j := -1
	for i := range es {
		if es[i].tomb && (j < 0 || es[i].counter < es[j].counter) {
			j = i
		}
	}
	return j
}

// Self returns the local peer.
func (s *Store) Self() PeerID { return s.self }

// Epoch returns the local peer's epoch.
func (s *Store) Epoch() uint64 { return s.me.epoch }

// visible reports whether e is shown to readers: not a tombstone and not past its TTL on
// the store's clock (the latest now seen), even if Expire has not run yet.
func (s *Store) visible(e *entry) bool {
	return !e.tomb && (e.deadline == 0 || s.now < e.deadline)
}

// Get returns a copy of peer's value for key.
func (s *Store) Get(peer PeerID, key string) ([]byte, bool) {
	p := s.peers[string(peer)]
	if p == nil {
		return nil, false
	}
	i, found := p.find(key)
	if !found || !s.visible(&p.entries[i]) {
		return nil, false
	}
	return append([]byte{}, p.entries[i].value...), true
}

// State returns a copy of peer's visible keys and values, or nil if the peer is unknown.
func (s *Store) State(peer PeerID) map[string][]byte {
	p := s.peers[string(peer)]
	if p == nil {
		return nil
	}
	return s.stateOf(p)
}

func (s *Store) stateOf(p *peerState) map[string][]byte {
	m := make(map[string][]byte, p.live)
	for i := range p.entries {
		if e := &p.entries[i]; s.visible(e) {
			m[e.key] = append([]byte{}, e.value...)
		}
	}
	return m
}

// States returns a copy of every known peer's state, self included. Peers with no keys map
// to an empty map.
func (s *Store) States() map[PeerID]map[string][]byte {
	out := make(map[PeerID]map[string][]byte, len(s.peers))
	for _, p := range s.peers {
		out[p.id] = s.stateOf(p)
	}
	return out
}

// Peers returns the known peers, self included, sorted.
func (s *Store) Peers() []PeerID {
	out := make([]PeerID, 0, len(s.peers))
	for _, p := range s.peers {
		out = append(out, p.id)
	}
	slices.Sort(out)
	return out
}

// Version returns the highest version seen for peer (for self: the local epoch and counter).
// A peer known only through Heard has the zero Version.
func (s *Store) Version(peer PeerID) (Version, bool) {
	p := s.peers[string(peer)]
	if p == nil {
		return Version{}, false
	}
	return Version{Epoch: p.epoch, Counter: p.high}, true
}
