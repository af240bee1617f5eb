package room

import (
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/convene-p2p/convene/ephemeral"

	"github.com/convene-p2p/convene/room/roomnet"
)

// maxAnswerJitter bounds the random delay before an early heartbeat that
// answers a newcomer (and before its repeat), so that the members of a
// room do not all answer in the same instant.
const maxAnswerJitter = 50 * time.Millisecond

// answerRepeatDelay is how long after an early heartbeat that answered
// newcomers it is sent once more (plus 0–maxAnswerJitter). A newcomer
// connected to a single member receives the other members' answers only
// through that member's GossipSub mesh, which it joins at a GossipSub
// heartbeat (every 250ms, gossip.GossipSubParams) after its subscription
// is known; answers relayed before then never reach it (gossip does not
// re-offer them once it is in the mesh). 600ms covers two GossipSub
// heartbeats plus the time it takes the newcomer's subscription and
// GRAFT to travel, so the repeat reaches it well before the next regular
// heartbeat (HeartbeatInterval, 10s by default).
const answerRepeatDelay = 600 * time.Millisecond

// refuteWindow is how long a member suspected by another member's failed
// probe (roomnet.KindSuspect) has to show a sign of life before it is dropped
// (capped at Timeout/2). The subject refutes within milliseconds when it
// is alive and reachable: it answers a suspect about itself with a
// heartbeat at once.
const refuteWindow = 500 * time.Millisecond

// maxGone bounds how many removed peers the machine remembers.
const maxGone = 4096

// A failed join-snapshot fetch of a peer that is not (yet) a member is
// retried after 100ms, 200ms and 400ms: the peer may have subscribed to
// the topic a moment before its room could answer.
const (
	fetchRetries    = 3
	fetchRetryDelay = 100 * time.Millisecond
)

// retry is the state of the snapshot fetch retries of one peer.
type retry struct {
	at       time.Time // zero: none scheduled
	attempts int
}

// fetchPurpose says why the machine wants a direct Fetch of a peer.
type fetchPurpose uint8

const (
	// fetchSnapshot: the join snapshot (on PeerUp) or an identity fill-in
	// (a delta from an unknown peer). Failure means nothing.
	fetchSnapshot fetchPurpose = 1 << iota
	// fetchProbe: a liveness probe (after PeerDown, or a message during
	// quarantine). Failure removes the member with ReasonTimeout, unless
	// it was heard from after the probe started.
	fetchProbe
)

// fetchRequest asks the shell to Fetch peer and report back through
// machine.fetched with the same purpose and start time.
type fetchRequest struct {
	peer    PeerID
	purpose fetchPurpose
	started time.Time
}

// output is what the machine asks the shell to do after an input.
type output struct {
	publish []roomnet.Message // in order
	events  []Event           // in order
	fetches []fetchRequest    // to start
	destroy bool              // tear down: close the network, close Done
}

// member is a remote member as the machine knows it.
type member struct {
	id    Identity
	epoch uint64
	heard time.Time // receiver's clock
	up    time.Time // last roomnet.EventPeerUp (receiver's clock); zero if none
	named bool      // identity came from a hello/heartbeat (not only a delta)
}

// gone remembers a removed member's last incarnation.
type gone struct {
	epoch  uint64
	reason LeaveReason
	at     time.Time
	probed bool // removed by a failed probe: quarantine applies
}

// source says where a membership message came from.
type source uint8

const (
	fromGossip source = iota + 1
	fromFetch
	fromRelay // another member's signed message, relayed in a fetch reply
)

// relayRecord is one signed message of a remote member kept for relaying
// in fetch replies (see relays).
type relayRecord struct {
	signed []byte
	epoch  uint64
	ident  bool     // the member's latest hello/heartbeat
	keys   []string // keys whose newest value (or deletion) this message holds (≤ MaxKeysPerPeer)
}

// relays are a member's signed messages that together carry its current
// identity and state: its latest hello or heartbeat, and every later
// message that still holds the newest value of some key. Each record
// holds at least one key or the identity, so there are at most
// MaxKeysPerPeer+1 per member.
type relays []relayRecord

// machine is the pure state machine of one room: membership, heartbeats,
// coalescing, join snapshot requests, leave, linger and expiry. It has no
// goroutines, locks, I/O or clock reads: every input carries now, and its
// outputs (messages to publish, events, fetches, destroy) are collected
// with take. The next time it needs to run is deadline. It is not safe for
// concurrent use; the shell owns it from one goroutine.
type machine struct {
	id   string
	self Identity
	cfg  Config // validated
	rng  *rand.Rand
	log  *slog.Logger

	status Status
	store  *ephemeral.Store

	members      map[PeerID]*member // remote members only
	digest       uint64             // roomnet.ViewDigest of the members and self
	relays       map[PeerID]relays  // members' signed messages to relay
	memberExpiry time.Time          // lower bound of the earliest member deadline
	gone         map[PeerID]gone
	goneSweep    time.Time
	suspects     map[PeerID]suspicion // members suspected by others' probes
	acc          accusations          // refutations, baseless accusers (suspicion.go)
	failing      map[PeerID]failing   // members whose own probe failed, in their grace
	readmits     map[PeerID]readmit   // peers out after a timeout, heard again: held

	nextHeartbeat time.Time // periodic heartbeat due (Joined only)
	answerAt      time.Time // early heartbeat due; zero if none pending
	repeatAt      time.Time // repeat of the last early heartbeat due; zero if none
	lastHeartbeat time.Time // last hello/heartbeat published
	helloAt       time.Time // debounced hello republish due; zero if none
	helloDone     bool      // the first PeerUp since joining was seen
	deltaDirty    bool      // local writes not yet published
	deltaAt       time.Time // trailing-edge delta publish due
	lastDelta     time.Time // last delta publish
	deltaTAT      time.Time // pacing: theoretical arrival time of the next delta (GCRA)
	lingerEnd     time.Time // Left: when the room is destroyed

	fetching map[PeerID]fetchPurpose // in flight, per purpose
	retries  map[PeerID]retry        // snapshot fetches to retry

	selfSnap []byte // cached EncodeSnapshot(self); nil when stale

	// what changed since the last view
	dirtyPeers   map[PeerID]struct{}
	dirtyMembers bool
	dirtyStatus  bool

	out output

	stats *counters // read by Room.Stats from any goroutine
}

// newMachine creates a joined room machine at now: it publishes the hello
// and schedules the first heartbeat. epoch must be greater than any epoch
// this peer used before in this room.
func newMachine(now time.Time, id string, self Identity, cfg Config, epoch, seed uint64) (*machine, error) {
	store, err := ephemeral.New(ephemeral.Config{Self: self.Peer, Epoch: epoch, Timeout: cfg.Timeout, Limits: cfg.Limits})
	if err != nil {
		return nil, fmt.Errorf("room: presence store: %w", err)
	}
	m := &machine{
		id:         id,
		self:       cloneIdentity(self),
		cfg:        cfg,
		rng:        rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		log:        cfg.Logger,
		store:      store,
		members:    make(map[PeerID]*member),
		relays:     make(map[PeerID]relays),
		gone:       make(map[PeerID]gone),
		suspects:   make(map[PeerID]suspicion),
		failing:    make(map[PeerID]failing),
		readmits:   make(map[PeerID]readmit),
		fetching:   make(map[PeerID]fetchPurpose),
		retries:    make(map[PeerID]retry),
		dirtyPeers: make(map[PeerID]struct{}),
		stats:      new(counters),
	}
	m.join(now)
	return m, nil
}

// join makes the local peer a member with the store's epoch: hello now,
// first heartbeat after a jittered interval.
func (m *machine) join(now time.Time) {
	m.status = Joined
	m.digest = roomnet.PeerHash(m.self.Peer)
	for p := range m.members {
		m.digest ^= roomnet.PeerHash(p)
	}
	m.dirtyStatus, m.dirtyMembers = true, true
	m.dirtyPeers[m.self.Peer] = struct{}{}
	m.helloDone = false
	m.helloAt, m.answerAt, m.repeatAt, m.deltaAt, m.lingerEnd = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	m.lastDelta, m.deltaTAT = time.Time{}, time.Time{}
	m.deltaDirty = false
	m.selfSnap = nil
	m.publishHello(now)
}

// take returns and clears the pending outputs.
func (m *machine) take() output {
	o := m.out
	m.out = output{}
	return o
}

func (m *machine) emit(ev Event) {
	ev.Room = m.id
	m.out.events = append(m.out.events, ev)
}

func (m *machine) emitChange(ch ephemeral.Change) {
	if ch.Empty() {
		return
	}
	m.dirtyPeers[ch.Peer] = struct{}{}
	if ch.Peer == m.self.Peer {
		m.selfSnap = nil
	}
	m.emit(Event{Type: PresenceChanged, Change: ch})
}

func (m *machine) publish(msg roomnet.Message) { m.out.publish = append(m.out.publish, msg) }

func (m *machine) epoch() uint64 { return m.store.Epoch() }

// errIfNotJoined is the error for operations that need status Joined.
func (m *machine) errIfNotJoined() error {
	switch m.status {
	case Joined:
		return nil
	case Left:
		return ErrNotJoined
	}
	return ErrClosed
}

// selfSnapshot is the encoded snapshot of the local peer's own state.
func (m *machine) selfSnapshot() []byte {
	if m.selfSnap == nil {
		m.selfSnap = m.store.EncodeSnapshot(m.self.Peer)
	}
	return m.selfSnap
}

func (m *machine) selfMessage(kind roomnet.MessageKind) roomnet.Message {
	return roomnet.Message{Kind: kind, Epoch: m.epoch(), Name: m.self.Name, Meta: m.self.Meta, State: m.selfSnapshot()}
}

func (m *machine) publishHello(now time.Time) {
	m.publishFull(now, roomnet.KindHello)
}

func (m *machine) publishHeartbeat(now time.Time) {
	m.publishFull(now, roomnet.KindHeartbeat)
}

// publishFull publishes a hello or heartbeat (identity, epoch, full own
// state). It supersedes any pending delta and early answer, and restarts
// the heartbeat period. If it answers newcomers (an early answer was
// pending), it schedules its repeat; a pending repeat is done if this
// message goes out at most PublishInterval before the repeat was due.
func (m *machine) publishFull(now time.Time, kind roomnet.MessageKind) {
	m.store.EncodeDelta() // the full state supersedes the pending delta
	m.deltaDirty, m.deltaAt = false, time.Time{}
	msg := m.selfMessage(kind)
	if kind == roomnet.KindHello {
		msg.View = m.digest
	}
	msg.Refute = m.takeRefute() && kind == roomnet.KindHeartbeat
	if msg.Refute {
		m.stats.refutations.Add(1)
	}
	m.publish(msg)
	m.lastHeartbeat = now
	if !m.repeatAt.IsZero() && !now.Before(m.repeatAt.Add(-m.cfg.PublishInterval)) {
		m.repeatAt = time.Time{}
	}
	if !m.answerAt.IsZero() {
		// The newcomers just answered may not be in the mesh of the
		// member that relays to them yet: say it again once they are. A
		// pending repeat (for earlier newcomers) moves later, so one
		// repeat covers them all.
		m.answerAt = time.Time{}
		at := now.Add(answerRepeatDelay + time.Duration(m.rng.Int64N(int64(maxAnswerJitter)+1)))
		if at.After(m.repeatAt) {
			m.repeatAt = at
		}
	}
	m.nextHeartbeat = now.Add(m.jitter(m.cfg.HeartbeatInterval))
}

// jitter returns d ±10%.
func (m *machine) jitter(d time.Duration) time.Duration {
	span := int64(d / 5)
	if span <= 0 {
		return d
	}
	return d - d/10 + time.Duration(m.rng.Int64N(span+1))
}

// ---- local writes

// set writes a local key (ttl > 0: the key expires ttl after the write,
// everywhere).
func (m *machine) set(now time.Time, key string, value []byte, ttl time.Duration) error {
	m.advance(now)
	if err := m.errIfNotJoined(); err != nil {
		return err
	}
	var (
		ch  ephemeral.Change
		err error
	)
	if ttl > 0 {
		ch, err = m.store.SetTTL(now, key, value, ttl)
	} else {
		ch, err = m.store.Set(now, key, value)
	}
	if err != nil {
		return fmt.Errorf("room: set %q: %w", key, err)
	}
	m.localChange(now, ch)
	return nil
}

// del deletes a local key. Deleting a missing key is a no-op.
func (m *machine) del(now time.Time, key string) error {
	m.advance(now)
	if err := m.errIfNotJoined(); err != nil {
		return err
	}
	ch, err := m.store.Delete(now, key)
	if err != nil {
		return fmt.Errorf("room: delete %q: %w", key, err)
	}
	m.localChange(now, ch)
	return nil
}

// localChange emits a local change and schedules its publication: at once
// if the pacing allows it (leading edge), else at the earliest time it does
// (trailing edge), carrying whatever is latest then.
func (m *machine) localChange(now time.Time, ch ephemeral.Change) {
	if ch.Empty() {
		return
	}
	m.emitChange(ch)
	m.selfSnap = nil
	m.deltaDirty = true
	at := m.nextDeltaAllowed()
	if !now.Before(at) {
		m.publishDelta(now)
		return
	}
	m.deltaAt = at
}

// nextDeltaAllowed is the earliest time the next delta may go out. Deltas
// are paced like a token bucket of rate 1/PublishInterval and capacity 2
// (the generic cell rate algorithm: deltaTAT is when the bucket would be
// full again), and never closer together than PublishInterval/2. So a
// room publishes at most 2 + T/PublishInterval deltas in any span T —
// one per PublishInterval in a sustained burst — but an update that comes
// a little early after the previous one (an app ticking at exactly
// 1/PublishInterval, with jitter) is sent at once instead of waiting for
// the window to end: a strict one-per-window rule phase-locks such an app
// to up to a whole PublishInterval of extra latency.
func (m *machine) nextDeltaAllowed() time.Time {
	if m.lastDelta.IsZero() {
		return time.Time{}
	}
	at := m.deltaTAT.Add(-m.cfg.PublishInterval)
	if spaced := m.lastDelta.Add(m.cfg.PublishInterval / 2); spaced.After(at) {
		at = spaced
	}
	return at
}

func (m *machine) publishDelta(now time.Time) {
	m.deltaDirty, m.deltaAt = false, time.Time{}
	m.lastDelta = now
	if m.deltaTAT.Before(now) {
		m.deltaTAT = now
	}
	m.deltaTAT = m.deltaTAT.Add(m.cfg.PublishInterval)
	if d := m.store.EncodeDelta(); len(d) > 0 {
		m.publish(roomnet.Message{Kind: roomnet.KindDelta, Epoch: m.epoch(), State: d})
	}
}

// ---- network input

// receive handles one validated message authored by from; signed is its
// signed form for relaying (roomnet.Event.Signed), or nil.
func (m *machine) receive(now time.Time, from PeerID, msg roomnet.Message, signed []byte) {
	m.advance(now)
	if m.status == Closed || from == m.self.Peer || from == "" {
		return
	}
	switch msg.Kind {
	case roomnet.KindHello, roomnet.KindHeartbeat, roomnet.KindDelta:
		m.announce(now, from, msg, fromGossip, signed)
		m.refutation(now, from, msg)
	case roomnet.KindLeave:
		m.remoteLeave(now, from, msg.Epoch)
	case roomnet.KindBroadcast:
		m.broadcast(now, from, msg)
	case roomnet.KindSuspect:
		m.suspect(now, from, msg)
	}
}

// stale reports whether a message of epoch e from p belongs to an
// incarnation that must not be (re)admitted, and whether it must first be
// confirmed by a probe (quarantine after a failed probe).
func (m *machine) stale(now time.Time, p PeerID, e uint64, src source) (stale, confirm bool) {
	if mem := m.members[p]; mem != nil {
		return e < mem.epoch, false
	}
	g, ok := m.gone[p]
	if !ok || e > g.epoch {
		return false, false
	}
	if e < g.epoch || g.reason == ReasonLeft {
		return true, false
	}
	if src == fromRelay {
		// Another member's copy of an old message proves nothing about
		// the incarnation this peer dropped (by probe, suspicion or
		// timeout): only the member itself can bring it back.
		return true, false
	}
	// Same epoch, removed by timeout: fresh messages bring it back (a
	// partition healed), except right after a failed probe, when they may
	// still be in flight from a dead peer.
	if g.probed && src != fromFetch && now.Before(g.at.Add(m.cfg.quarantine())) {
		return true, true
	}
	return false, false
}

// announce handles a hello, heartbeat, delta or fetch reply from p: it
// admits p as a member if needed, applies its state and refreshes its
// liveness. signed is the message's signed form to keep for relaying (nil
// for a fetch reply, which is not signed by its author's pubsub key).
func (m *machine) announce(now time.Time, p PeerID, msg roomnet.Message, src source, signed []byte) {
	if src == fromGossip && m.holdReadmit(now, p, msg, signed) {
		return
	}
	stale, confirm := m.stale(now, p, msg.Epoch, src)
	if confirm && src == fromGossip {
		m.requestFetch(now, p, fetchProbe)
	}
	if stale {
		return
	}
	m.reprieve(p, msg.Epoch, src)
	mem := m.members[p]
	isNew := mem == nil
	newEpoch := !isNew && msg.Epoch > mem.epoch
	// heard is when this message proves p alive: now, except for a relayed
	// copy, which may be as old as the relaying member's age bound
	// (relayMaxAge): it never makes a member look more recently alive
	// than that, and a known member's last-heard is left alone.
	heard, alive := now, true
	if src == fromRelay {
		heard = now.Add(-m.cfg.relayMaxAge())
		alive = isNew || newEpoch
	}
	if isNew {
		if err := m.store.Heard(now, p); err != nil {
			m.log.Debug("room: peer not admitted", "room", m.id, "peer", logPeer(p), "err", err)
			return
		}
	}
	var changes []ephemeral.Change
	if len(msg.State) > 0 {
		ch, err := m.store.Apply(now, p, msg.State)
		if err != nil {
			m.log.Debug("room: state rejected", "room", m.id, "peer", logPeer(p), "kind", msg.Kind, "err", err)
			if isNew {
				m.store.Remove(p, ephemeral.CauseRemote)
				return
			}
			// A known member: still alive, keep it.
			_ = m.store.Heard(now, p)
		}
		changes = ch
	} else if !isNew {
		_ = m.store.Heard(now, p)
	}
	full := msg.Kind == roomnet.KindHello || msg.Kind == roomnet.KindHeartbeat
	if isNew {
		delete(m.gone, p)
		delete(m.readmits, p)
		delete(m.retries, p)
		mem = &member{id: Identity{Peer: p}, epoch: msg.Epoch, heard: heard}
		if full {
			mem.id.Name, mem.id.Meta, mem.named = msg.Name, cloneMeta(msg.Meta), true
		}
		m.members[p] = mem
		m.digest ^= roomnet.PeerHash(p)
		m.dirtyMembers = true
		m.dirtyPeers[p] = struct{}{}
		m.stats.joined.Add(1)
		m.emit(Event{Type: MemberJoined, Member: cloneIdentity(mem.id)})
	} else {
		if alive && heard.After(mem.heard) {
			mem.heard = heard
		}
		if newEpoch {
			mem.epoch = msg.Epoch
		}
		if full && (!mem.named || mem.id.Name != msg.Name || !maps.Equal(mem.id.Meta, msg.Meta)) {
			changed := mem.id.Name != msg.Name || !maps.Equal(mem.id.Meta, msg.Meta)
			mem.id.Name, mem.id.Meta, mem.named = msg.Name, cloneMeta(msg.Meta), true
			if changed {
				m.dirtyMembers = true
				m.emit(Event{Type: MemberUpdated, Member: cloneIdentity(mem.id)})
			}
		}
	}
	if d := mem.heard.Add(m.cfg.Timeout); m.memberExpiry.IsZero() || d.Before(m.memberExpiry) {
		m.memberExpiry = d
	}
	if signed != nil {
		m.keepRelay(p, msg, signed, changes)
	}
	for _, ch := range changes {
		m.emitChange(ch)
	}
	if !full && (isNew || newEpoch) && src != fromRelay {
		// Known only from a delta: fetch its identity (and full state).
		m.requestFetch(now, p, fetchSnapshot)
	}
	if src == fromGossip && m.status == Joined && m.shouldAnswer(msg, isNew || newEpoch) {
		m.scheduleAnswer(now)
	}
}

// shouldAnswer says whether a hello, heartbeat or delta from the gossip
// topic calls for an early heartbeat. A hello that carries its author's
// view digest is answered iff the digest differs from ours (after
// admitting the author): the author may be missing members, ours
// included. A newcomer sends its second hello after fetching a neighbour,
// whose reply relays every member's signed state, so in a settled room the
// digests agree and nobody answers: a join costs O(N) messages, not
// O(N²). Anything else is answered iff it revealed a new peer or a new
// incarnation.
func (m *machine) shouldAnswer(msg roomnet.Message, fresh bool) bool {
	if msg.Kind == roomnet.KindHello && msg.View != 0 {
		return msg.View != m.digest
	}
	return fresh
}

// keepRelay keeps p's signed message for relaying if it is p's newest
// hello/heartbeat (its identity) or holds p's newest value of some key
// (changes: what applying it changed), and drops p's older records that
// no longer hold anything.
func (m *machine) keepRelay(p PeerID, msg roomnet.Message, signed []byte, changes []ephemeral.Change) {
	mem := m.members[p]
	if mem == nil || msg.Epoch != mem.epoch {
		return
	}
	full := msg.Kind == roomnet.KindHello || msg.Kind == roomnet.KindHeartbeat
	var keys []string
	for _, ch := range changes {
		if ch.Peer == p {
			keys = slices.Concat(keys, ch.Added, ch.Updated, ch.Removed)
		}
	}
	if !full && len(keys) == 0 {
		return // a duplicate or stale delta: holds nothing new
	}
	rs := m.relays[p]
	kept := rs[:0]
	for _, r := range rs {
		if r.epoch < msg.Epoch {
			continue
		}
		if full {
			r.ident = false
		}
		r.keys = slices.DeleteFunc(r.keys, func(k string) bool { return slices.Contains(keys, k) })
		if r.ident || len(r.keys) > 0 {
			kept = append(kept, r)
		}
	}
	clear(rs[len(kept):])
	m.relays[p] = append(kept, relayRecord{signed: signed, epoch: msg.Epoch, ident: full, keys: keys})
}

// serve is the answer to another peer's Fetch while joined: the own
// state, and the members' relay records, each member's identity record
// first. Only members heard from directly within relayMaxAge are relayed,
// and none that this peer is about to drop (a failed probe, a pending
// suspicion): a relay vouches for no more than its server heard lately.
func (m *machine) serve(now time.Time) (roomnet.Served, bool) {
	m.advance(now)
	if m.status != Joined {
		return roomnet.Served{}, false
	}
	s := roomnet.Served{State: m.selfMessage(roomnet.KindHeartbeat)}
	oldest := now.Add(-m.cfg.relayMaxAge())
	for _, p := range slices.Sorted(maps.Keys(m.relays)) {
		if !m.relayable(p, oldest) {
			continue
		}
		rs := m.relays[p]
		for _, r := range rs {
			if r.ident {
				s.Relayed = append(s.Relayed, r.signed)
			}
		}
		for _, r := range rs {
			if !r.ident {
				s.Relayed = append(s.Relayed, r.signed)
			}
		}
	}
	return s, true
}

// scheduleAnswer schedules an early heartbeat after a newcomer (or a new
// incarnation) appeared: jittered by 0–50ms, and never sooner than
// PublishInterval after the previous hello/heartbeat, so a burst of
// newcomers costs one heartbeat per window.
func (m *machine) scheduleAnswer(now time.Time) {
	if !m.answerAt.IsZero() {
		return
	}
	at := now.Add(time.Duration(m.rng.Int64N(int64(maxAnswerJitter) + 1)))
	if !m.lastHeartbeat.IsZero() {
		if earliest := m.lastHeartbeat.Add(m.cfg.PublishInterval); at.Before(earliest) {
			at = earliest
		}
	}
	m.answerAt = at
}

// remoteLeave handles a goodbye of epoch e from p.
func (m *machine) remoteLeave(now time.Time, p PeerID, e uint64) {
	if mem := m.members[p]; mem != nil {
		if e < mem.epoch {
			return // a stale goodbye from an older incarnation
		}
		m.removeMember(now, p, ReasonLeft, e, false, nil)
		return
	}
	// Not a member (yet): remember the goodbye so that late messages of
	// this incarnation cannot admit it, nor those held for readmission.
	if r, ok := m.readmits[p]; ok && e >= r.epoch {
		delete(m.readmits, p)
	}
	if g, ok := m.gone[p]; !ok || e > g.epoch || (e == g.epoch && g.reason != ReasonLeft) {
		m.remember(now, p, gone{epoch: e, reason: ReasonLeft, at: now})
	}
}

// broadcast delivers an application message. Any verified author whose
// incarnation is not stale may broadcast, a peer that has not said hello
// yet included (issue 15, 3: a broadcast right after Join often arrives
// before the author's hello); a broadcast does not make its author a
// member (it carries no identity), but it proves a member alive.
func (m *machine) broadcast(now time.Time, p PeerID, msg roomnet.Message) {
	if stale, _ := m.stale(now, p, msg.Epoch, fromFetch); stale {
		return
	}
	id := Identity{Peer: p}
	if mem := m.members[p]; mem != nil {
		id = cloneIdentity(mem.id)
		if msg.Epoch == mem.epoch {
			mem.heard = now
			_ = m.store.Heard(now, p)
		}
	}
	m.emit(Event{Type: Broadcast, Member: id, Payload: msg.Payload})
}

// removeMember drops member p now. ch is the store's change if the store
// already dropped it (Expire); otherwise the store is told to.
func (m *machine) removeMember(now time.Time, p PeerID, reason LeaveReason, epoch uint64, probed bool, ch *ephemeral.Change) {
	mem := m.members[p]
	if mem == nil {
		return
	}
	delete(m.members, p)
	m.digest ^= roomnet.PeerHash(p)
	delete(m.relays, p)
	delete(m.suspects, p)
	delete(m.failing, p)
	m.dirtyMembers = true
	m.dirtyPeers[p] = struct{}{}
	if ch == nil {
		cause := ephemeral.CauseTimeout
		if reason == ReasonLeft {
			cause = ephemeral.CauseLeave
		}
		c := m.store.Remove(p, cause)
		ch = &c
	}
	if reason == ReasonLeft {
		m.stats.leftGoodbye.Add(1)
	} else {
		m.stats.leftTimeout.Add(1)
	}
	m.emitChange(*ch)
	m.emit(Event{Type: MemberLeft, Member: cloneIdentity(mem.id), Reason: reason})
	m.remember(now, p, gone{epoch: max(epoch, mem.epoch), reason: reason, at: now, probed: probed})
}

func (m *machine) remember(now time.Time, p PeerID, g gone) {
	if _, ok := m.gone[p]; !ok && len(m.gone) >= maxGone {
		m.sweepGone(now, true)
	}
	m.gone[p] = g
}

// sweepGone forgets removed peers older than the retention; with force,
// it also forgets the oldest record so that there is room for one more.
func (m *machine) sweepGone(now time.Time, force bool) {
	var oldest PeerID
	var oldestAt time.Time
	for p, g := range m.gone {
		if !now.Before(g.at.Add(m.cfg.goneRetention())) {
			delete(m.gone, p)
			continue
		}
		if oldest == "" || g.at.Before(oldestAt) {
			oldest, oldestAt = p, g.at
		}
	}
	if force && len(m.gone) >= maxGone && oldest != "" {
		delete(m.gone, oldest)
	}
	m.goneSweep = now.Add(m.cfg.goneRetention() / 2)
}

// peerUp handles the transport hint that p can be reached: fetch its state
// directly (the join snapshot), and on the first PeerUp since joining,
// republish our hello shortly (peers that are not directly connected
// learn about us from it). After Leave (lingering), repeat the goodbye.
func (m *machine) peerUp(now time.Time, p PeerID) {
	m.advance(now)
	if m.status == Closed || p == m.self.Peer || p == "" {
		return
	}
	delete(m.retries, p)
	if mem := m.members[p]; mem != nil {
		mem.up = now
	}
	m.requestFetch(now, p, fetchSnapshot)
	if m.status == Left {
		// A peer that appears during the linger may never have received
		// the goodbye (it was published before its subscription was
		// known, so it reached nobody): say it again. A peer that already
		// had it ignores the copy.
		m.publish(roomnet.Message{Kind: roomnet.KindLeave, Epoch: m.epoch()})
	}
	if m.status == Joined && !m.helloDone {
		m.helloDone = true
		m.helloAt = now.Add(m.cfg.PublishInterval)
	}
}

// peerDown handles the transport hint that p's connection closed: probe
// it; if the probe fails, it is removed at once.
func (m *machine) peerDown(now time.Time, p PeerID) {
	m.advance(now)
	if m.status == Closed {
		return
	}
	delete(m.retries, p)
	if m.members[p] != nil {
		m.requestFetch(now, p, fetchProbe)
	}
}

func (m *machine) requestFetch(now time.Time, p PeerID, purpose fetchPurpose) {
	if m.fetching[p]&purpose != 0 {
		return
	}
	m.fetching[p] |= purpose
	m.stats.fetches.Add(1)
	m.out.fetches = append(m.out.fetches, fetchRequest{peer: p, purpose: purpose, started: now})
}

// fetched handles the result of a fetch the machine asked for. The reply's
// relayed messages are applied for a snapshot fetch (the join snapshot):
// each as a message of its signer, admitting members this peer is not
// connected to without waiting for their answers to its hello.
func (m *machine) fetched(now time.Time, req fetchRequest, reply roomnet.FetchReply, err error) {
	m.advance(now)
	if f := m.fetching[req.peer] &^ req.purpose; f == 0 {
		delete(m.fetching, req.peer)
	} else {
		m.fetching[req.peer] = f
	}
	if m.status == Closed {
		return
	}
	if err != nil {
		m.stats.fetchesFailed.Add(1)
		if req.purpose == fetchSnapshot {
			m.scheduleRetry(now, req.peer)
			return
		}
		mem := m.members[req.peer]
		if mem != nil && mem.up.After(req.started) {
			// The transport saw the peer come up again while the probe
			// was on its way (a restarted peer whose old connection was
			// closed under the probe): probe again, over the new path.
			m.requestFetch(now, req.peer, fetchProbe)
			return
		}
		// Remove unless it was heard from well after the probe began:
		// messages still arriving then (e.g. through relays) prove it
		// alive, but those heard right after the PeerDown hint were most
		// likely queued or in flight before it died.
		if mem != nil && !mem.heard.After(req.started.Add(m.cfg.probeGrace())) {
			// Dropped after the restart grace, unless a new incarnation
			// (or a successful fetch) shows up first.
			epoch := mem.epoch
			m.stats.probesFailed.Add(1)
			m.holdFailing(now, req.peer, epoch)
			if m.status == Joined {
				// Members not connected to it got no PeerDown: tell them.
				m.publish(roomnet.Message{Kind: roomnet.KindSuspect, Epoch: m.epoch(), Subject: req.peer, SubjectEpoch: epoch})
			}
		}
		return
	}
	if msg := reply.State; msg.Kind == roomnet.KindHeartbeat || msg.Kind == roomnet.KindHello {
		m.announce(now, req.peer, msg, fromFetch, nil)
	}
	if req.purpose != fetchSnapshot {
		return
	}
	for _, ev := range reply.Relayed {
		if ev.Kind != roomnet.EventMessage || ev.From == m.self.Peer || ev.From == req.peer || ev.From == "" {
			continue
		}
		switch ev.Msg.Kind {
		case roomnet.KindHello, roomnet.KindHeartbeat, roomnet.KindDelta:
			m.stats.relaysUsed.Add(1)
			m.announce(now, ev.From, ev.Msg, fromRelay, ev.Signed)
		}
	}
}

// scheduleRetry schedules the next snapshot fetch of a peer that is not a
// member, if it has retries left.
func (m *machine) scheduleRetry(now time.Time, p PeerID) {
	if m.members[p] != nil {
		return
	}
	r := m.retries[p]
	if r.attempts >= fetchRetries {
		return
	}
	r.at = now.Add(fetchRetryDelay << r.attempts)
	r.attempts++
	m.retries[p] = r
}

// ---- time

// advance expires what is due at now: silent members, TTL keys, old
// removal records. Every input calls it first, so inputs always see an
// up-to-date room.
func (m *machine) advance(now time.Time) {
	if m.status == Closed {
		return
	}
	if !m.memberExpiry.IsZero() && !now.Before(m.memberExpiry) {
		m.memberExpiry = time.Time{}
		var due []PeerID
		for p, mem := range m.members {
			d := mem.heard.Add(m.cfg.Timeout)
			if !now.Before(d) {
				due = append(due, p)
			} else if m.memberExpiry.IsZero() || d.Before(m.memberExpiry) {
				m.memberExpiry = d
			}
		}
		slices.Sort(due)
		for _, p := range due {
			m.removeMember(now, p, ReasonTimeout, m.members[p].epoch, false, nil)
		}
	}
	for _, ch := range m.store.Expire(now) {
		if ch.Gone {
			if m.members[ch.Peer] != nil {
				c := ch
				m.removeMember(now, ch.Peer, ReasonTimeout, 0, false, &c)
			}
			continue
		}
		if ch.Peer == m.self.Peer && m.status != Joined {
			continue
		}
		m.emitChange(ch)
	}
	if len(m.gone) > 0 && !now.Before(m.goneSweep) {
		m.sweepGone(now, false)
	}
	m.expireFailing(now)
	m.expireReadmits(now)
	m.expireSuspects(now)
}

// tick runs the timers due at now.
func (m *machine) tick(now time.Time) {
	m.advance(now)
	switch m.status {
	case Joined:
		if !m.helloAt.IsZero() && !now.Before(m.helloAt) {
			m.helloAt = time.Time{}
			m.publishHello(now)
		}
		if (!m.answerAt.IsZero() && !now.Before(m.answerAt)) ||
			(!m.repeatAt.IsZero() && !now.Before(m.repeatAt)) ||
			!now.Before(m.nextHeartbeat) {
			m.publishHeartbeat(now)
		}
		if m.deltaDirty && !now.Before(m.deltaAt) {
			m.publishDelta(now)
		}
	case Left:
		if !now.Before(m.lingerEnd) {
			m.destroy()
			return
		}
	}
	for _, p := range slices.Sorted(maps.Keys(m.retries)) {
		if r := m.retries[p]; !r.at.IsZero() && !now.Before(r.at) {
			r.at = time.Time{}
			m.retries[p] = r
			m.requestFetch(now, p, fetchSnapshot)
		}
	}
}

// deadline is the next time tick has something to do.
func (m *machine) deadline() (time.Time, bool) {
	var d time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	switch m.status {
	case Closed:
		return time.Time{}, false
	case Joined:
		consider(m.nextHeartbeat)
		consider(m.answerAt)
		consider(m.repeatAt)
		consider(m.helloAt)
		if m.deltaDirty {
			consider(m.deltaAt)
		}
	case Left:
		consider(m.lingerEnd)
	}
	consider(m.memberExpiry)
	for _, r := range m.retries {
		consider(r.at)
	}
	for _, s := range m.suspects {
		consider(s.due)
	}
	for _, f := range m.failing {
		consider(f.due)
	}
	for _, r := range m.readmits {
		consider(r.due)
	}
	if t, ok := m.store.NextDeadline(); ok {
		consider(t)
	}
	return d, !d.IsZero()
}

// ---- lifecycle

// leave says goodbye: publishes the leave, stops heartbeats and deltas,
// clears the local presence and starts the linger.
func (m *machine) leave(now time.Time) error {
	m.advance(now)
	if err := m.errIfNotJoined(); err != nil {
		return err
	}
	if m.deltaDirty {
		// The trailing edge is always sent, a goodbye or not: a write
		// still held by the pacing goes out before the goodbye (one
		// publish over the pace at most), so those who see the goodbye
		// have seen the last value written before it.
		m.publishDelta(now)
	}
	m.publish(roomnet.Message{Kind: roomnet.KindLeave, Epoch: m.epoch()})
	m.status = Left
	m.dirtyStatus, m.dirtyMembers = true, true
	m.nextHeartbeat, m.answerAt, m.repeatAt, m.helloAt, m.deltaAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	m.deltaDirty = false
	var keys []string
	for k := range m.store.State(m.self.Peer) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		_, _ = m.store.Delete(now, k)
	}
	m.store.EncodeDelta() // never published: the goodbye says it all
	m.selfSnap = nil
	m.dirtyPeers[m.self.Peer] = struct{}{}
	m.emit(Event{Type: PresenceChanged, Change: ephemeral.Change{Peer: m.self.Peer, Removed: keys, Cause: ephemeral.CauseLeave, Gone: true}})
	m.emit(Event{Type: MemberLeft, Member: cloneIdentity(m.self), Reason: ReasonLeft})
	if m.cfg.Linger < 0 {
		m.destroy()
	} else {
		m.lingerEnd = now.Add(m.cfg.Linger)
	}
	return nil
}

// rejoin makes the local peer a member again during the linger, with a
// new epoch (greater than the previous one). Rejoining a joined room is a
// no-op.
func (m *machine) rejoin(now time.Time, epoch uint64) error {
	m.advance(now)
	switch m.status {
	case Joined:
		return nil
	case Closed:
		return ErrClosed
	}
	if epoch <= m.epoch() {
		return fmt.Errorf("room: rejoin: epoch %d not greater than %d", epoch, m.epoch())
	}
	store, err := ephemeral.New(ephemeral.Config{Self: m.self.Peer, Epoch: epoch, Timeout: m.cfg.Timeout, Limits: m.cfg.Limits})
	if err != nil {
		return fmt.Errorf("room: rejoin: %w", err)
	}
	// Hand the remote members' state over to the new store.
	peers := slices.Sorted(maps.Keys(m.members))
	if len(peers) > 0 {
		if _, err := store.ApplyTrusted(now, m.store.EncodeSnapshot(peers...)); err != nil {
			return fmt.Errorf("room: rejoin: %w", err)
		}
		for _, p := range peers {
			_ = store.Heard(m.members[p].heard, p)
		}
	}
	m.store = store
	m.join(now)
	m.emit(Event{Type: MemberJoined, Member: cloneIdentity(m.self)})
	return nil
}

// destroy ends the room: status Closed, RoomDestroyed, and the shell tears
// down.
func (m *machine) destroy() {
	if m.status == Closed {
		return
	}
	m.status = Closed
	m.dirtyStatus, m.dirtyMembers = true, true
	m.dirtyPeers[m.self.Peer] = struct{}{}
	m.emit(Event{Type: RoomDestroyed})
	m.out.destroy = true
}

// ---- reads

// view is an immutable snapshot of what readers see. The shell publishes
// it after every input; any goroutine may read it.
type view struct {
	status  Status
	epoch   uint64
	members []Identity                   // sorted by peer; self included while joined
	states  map[PeerID]map[string][]byte // members only; inner maps never change
}

// view returns the snapshot after the latest inputs, reusing what did not
// change from prev (which may be nil).
func (m *machine) view(prev *view) *view {
	if prev != nil && !m.dirtyStatus && !m.dirtyMembers && len(m.dirtyPeers) == 0 {
		return prev
	}
	v := &view{status: m.status, epoch: m.epoch()}
	if prev != nil && !m.dirtyMembers {
		v.members = prev.members
	} else {
		v.members = make([]Identity, 0, len(m.members)+1)
		if m.status == Joined {
			v.members = append(v.members, cloneIdentity(m.self))
		}
		for _, mem := range m.members {
			v.members = append(v.members, cloneIdentity(mem.id))
		}
		slices.SortFunc(v.members, func(a, b Identity) int {
			switch {
			case a.Peer < b.Peer:
				return -1
			case a.Peer > b.Peer:
				return 1
			}
			return 0
		})
	}
	if prev != nil {
		// Every membership change marks the peer dirty, so patching the
		// previous states is enough.
		v.states = maps.Clone(prev.states)
		for p := range m.dirtyPeers {
			m.refreshState(v.states, p)
		}
	} else {
		v.states = make(map[PeerID]map[string][]byte, len(m.members)+1)
		m.refreshState(v.states, m.self.Peer)
		for p := range m.members {
			m.refreshState(v.states, p)
		}
	}
	clear(m.dirtyPeers)
	m.dirtyMembers, m.dirtyStatus = false, false
	return v
}

func (m *machine) refreshState(states map[PeerID]map[string][]byte, p PeerID) {
	isMember := m.members[p] != nil || (p == m.self.Peer && m.status == Joined)
	if !isMember {
		delete(states, p)
		return
	}
	s := m.store.State(p)
	if s == nil {
		s = map[string][]byte{}
	}
	states[p] = s
}

func cloneMeta(meta map[string]string) map[string]string {
	if len(meta) == 0 {
		return nil
	}
	return maps.Clone(meta)
}

func cloneIdentity(id Identity) Identity {
	id.Meta = cloneMeta(id.Meta)
	return id
}
