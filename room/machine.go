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

// output is what the machine asks the shell to do after an input.
type output struct {
	publish []roomnet.Message // in order
	events  []Event           // in order
	fetches []fetchRequest    // to start
	destroy bool              // tear down: close the network, close Done
}

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

// nextDeadline is the next time tick has something to do.
func (m *machine) nextDeadline() (time.Time, bool) {
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
