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
	memberExpiry deadline           // lower bound of the earliest member deadline
	gone         map[PeerID]gone
	goneSweep    time.Time
	suspects     map[PeerID]suspicion // members suspected by others' probes
	acc          accusations          // refutations, baseless accusers (suspicion.go)
	failing      map[PeerID]failing   // members whose own probe failed, in their grace
	readmits     map[PeerID]readmit   // peers out after a timeout, heard again: held

	nextHeartbeat deadline  // periodic heartbeat due (Joined only)
	answerAt      deadline  // early heartbeat due; not set if none pending
	repeatAt      deadline  // repeat of the last early heartbeat due; not set if none
	lastHeartbeat time.Time // last hello/heartbeat published
	helloAt       deadline  // debounced hello republish due; not set if none
	helloDone     bool      // the first PeerUp since joining was seen
	delta         pacer     // local writes' deltas: pacing and the pending trailing edge
	lingerEnd     deadline  // Left: when the room is destroyed

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
		delta:      pacer{interval: cfg.PublishInterval},
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
	m.expire(now)
	if m.status == Closed || from == m.self.Peer || from == "" {
		return
	}
	switch msg.Kind {
	case roomnet.KindHello, roomnet.KindHeartbeat, roomnet.KindDelta:
		m.receiveState(now, from, msg, fromGossip, signed)
		m.refutation(now, from, msg)
	case roomnet.KindLeave:
		m.remoteLeave(now, from, msg.Epoch)
	case roomnet.KindBroadcast:
		m.broadcast(now, from, msg)
	case roomnet.KindSuspect:
		m.suspect(now, from, msg)
	}
}

// expire expires what is due at now: silent members, TTL keys, old
// removal records, failed probes' graces, readmission holds and
// suspicions. Every input calls it first, so inputs always see an
// up-to-date room.
func (m *machine) expire(now time.Time) {
	if m.status == Closed {
		return
	}
	if m.memberExpiry.due(now) {
		m.memberExpiry.clear()
		var due []PeerID
		for p, mem := range m.members {
			d := mem.heard.Add(m.cfg.Timeout)
			if !now.Before(d) {
				due = append(due, p)
			} else {
				m.memberExpiry.lower(d)
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
	m.expire(now)
	switch m.status {
	case Joined:
		if m.helloAt.due(now) {
			m.helloAt.clear()
			m.publishHello(now)
		}
		if m.answerAt.due(now) || m.repeatAt.due(now) || m.nextHeartbeat.due(now) {
			m.publishHeartbeat(now)
		}
		if m.delta.pending.due(now) {
			m.publishDelta(now)
		}
	case Left:
		if m.lingerEnd.due(now) {
			m.destroy()
			return
		}
	}
	for _, p := range slices.Sorted(maps.Keys(m.retries)) {
		if r := m.retries[p]; r.at.due(now) {
			r.at.clear()
			m.retries[p] = r
			m.requestFetch(now, p, fetchSnapshot)
		}
	}
}

// nextDeadline is the next time tick has something to do.
func (m *machine) nextDeadline() (time.Time, bool) {
	var next deadline
	switch m.status {
	case Closed:
		return time.Time{}, false
	case Joined:
		next.take(m.nextHeartbeat)
		next.take(m.answerAt)
		next.take(m.repeatAt)
		next.take(m.helloAt)
		next.take(m.delta.pending)
	case Left:
		next.take(m.lingerEnd)
	}
	next.take(m.memberExpiry)
	for _, r := range m.retries {
		next.take(r.at)
	}
	for _, s := range m.suspects {
		next.take(deadline{s.due})
	}
	for _, f := range m.failing {
		next.take(deadline{f.due})
	}
	for _, r := range m.readmits {
		next.take(deadline{r.due})
	}
	if t, ok := m.store.NextDeadline(); ok {
		next.take(deadline{t})
	}
	return next.at, next.isSet()
}
