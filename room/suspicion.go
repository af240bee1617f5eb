package room

import (
	"slices"
	"time"

	"github.com/convene-p2p/convene/room/roomnet"
)

// refuteWindow is how long a member suspected by another member's failed
// probe (roomnet.KindSuspect) has to show a sign of life before it is dropped
// (capped at Timeout/2). The subject refutes within milliseconds when it
// is alive and reachable: it answers a suspect about itself with a
// heartbeat at once.
const refuteWindow = 500 * time.Millisecond

// Suspicion rules (docs/PROTOCOL.md, "Suspicion"). A suspect can make a
// receiver drop a member only if that member stays silent for the whole
// refutation window after the suspect arrived and has not refuted it in
// advance. The rules below make that hold whatever the order and number
// of suspects:
//
//   - A refutation is a heartbeat with Refute set: the subject's answer to
//     a suspect about itself. It voids every suspect about its author's
//     incarnation that arrives within suspectHold after it, on the
//     receiver's clock. Such a suspect is older than the refutation in all
//     but arrival order: the subject had already seen it (pubsub relays a
//     message before it is answered, and drops later copies as
//     duplicates, so the subject never sees it again to answer it once
//     more).
//   - An open suspicion is refuted by any message from the subject heard
//     after the suspect arrived (as before).
//   - One open suspicion per subject; at most maxAccusersPerSubject
//     accusers are remembered on it; one accuser holds at most
//     maxSuspectsPerAccuser open suspicions at a receiver.
//   - An accuser whose accusation was refuted is baseless for suspectHold:
//     its suspects are void meanwhile.
const (
	// suspectHold is how long a refutation voids later suspects about its
	// author, and how long a refuted accuser's suspects are ignored. It
	// matches gossip's seen-message TTL (30 s): once pubsub has forgotten
	// a suspect, a copy of it reaches the subject again and is answered.
	suspectHold = 30 * time.Second
	// maxSuspectsPerAccuser bounds the open suspicions one accuser holds.
	maxSuspectsPerAccuser = 4
	// maxAccusersPerSubject bounds the accusers remembered per suspicion
	// (each is made baseless if the subject refutes).
	maxAccusersPerSubject = 8
	// suspicionSweep is how often expired holds are forgotten.
	suspicionSweep = time.Second
)

// suspicion is a member under suspicion: dropped at due unless heard from
// after since.
type suspicion struct {
	since, due time.Time
	accusers   []PeerID // the first maxAccusersPerSubject accusers
}

// accusations is the suspicion state beyond the open suspicions: who
// refuted lately (subject → until), who accused baselessly (accuser →
// until), and whether the local peer owes a refutation.
type accusations struct {
	refuted  map[PeerID]hold
	baseless map[PeerID]time.Time
	sweepAt  time.Time
	owed     bool // the next heartbeat is a refutation (roomnet.Message.Refute)
}

// hold is a refutation of one incarnation, valid until until.
type hold struct {
	epoch uint64
	until time.Time
}

// suspect handles a member's report that its probe of msg.Subject failed.
// Only current members may accuse, and only the subject's current
// incarnation. The subject itself refutes with an early heartbeat marked
// Refute; any other member drops the subject after the refutation window
// unless it hears from it in between, or the suspect is void (see the
// rules above). An accusation cannot remove a member that keeps being
// heard: at worst it costs that member one heartbeat per PublishInterval.
func (m *machine) suspect(now time.Time, from PeerID, msg roomnet.Message) {
	accuser := m.members[from]
	if accuser == nil || msg.Epoch != accuser.epoch {
		return
	}
	accuser.heard = now
	_ = m.store.Heard(now, from)
	if msg.Subject == m.self.Peer {
		if m.status == Joined && msg.SubjectEpoch == m.epoch() {
			m.scheduleAnswer(now)
			m.acc.owed = true
		}
		return
	}
	mem := m.members[msg.Subject]
	if mem == nil || mem.epoch != msg.SubjectEpoch {
		return
	}
	if until, ok := m.acc.baseless[from]; ok && now.Before(until) {
		m.voidSuspect()
		return
	}
	if h, ok := m.acc.refuted[msg.Subject]; ok && h.epoch == mem.epoch && now.Before(h.until) {
		m.voidSuspect()
		return
	}
	if s, ok := m.suspects[msg.Subject]; ok {
		if len(s.accusers) < maxAccusersPerSubject && !slices.Contains(s.accusers, from) {
			s.accusers = append(s.accusers, from)
			m.suspects[msg.Subject] = s
		}
		return
	}
	open := 0
	for _, s := range m.suspects {
		if slices.Contains(s.accusers, from) {
			open++
		}
	}
	if open >= maxSuspectsPerAccuser {
		m.voidSuspect()
		return
	}
	m.stats.suspected.Add(1)
	m.suspects[msg.Subject] = suspicion{since: now, due: now.Add(min(refuteWindow, m.cfg.Timeout/2)), accusers: []PeerID{from}}
}

// refutation handles a refutation heartbeat from member p (already applied
// as a heartbeat): it clears p's open suspicion, makes its accusers
// baseless, and voids suspects about this incarnation for suspectHold.
func (m *machine) refutation(now time.Time, p PeerID, msg roomnet.Message) {
	mem := m.members[p]
	if !msg.Refute || mem == nil || mem.epoch != msg.Epoch {
		return
	}
	if m.acc.refuted == nil {
		m.acc.refuted = make(map[PeerID]hold)
	}
	m.acc.refuted[p] = hold{epoch: mem.epoch, until: now.Add(suspectHold)}
	if s, ok := m.suspects[p]; ok {
		m.stats.refuted.Add(1)
		m.baselessAccusers(now, s)
		delete(m.suspects, p)
	}
}

// baselessAccusers makes the accusers of a refuted suspicion baseless.
func (m *machine) baselessAccusers(now time.Time, s suspicion) {
	if m.acc.baseless == nil {
		m.acc.baseless = make(map[PeerID]time.Time)
	}
	for _, a := range s.accusers {
		m.acc.baseless[a] = now.Add(suspectHold)
	}
}

// expireSuspects drops suspected members whose window ended in silence,
// forgets refuted suspicions (charging their accusers), and sweeps expired
// holds.
func (m *machine) expireSuspects(now time.Time) {
	if len(m.suspects) > 0 {
		var due []PeerID
		for p, s := range m.suspects {
			mem := m.members[p]
			switch {
			case mem == nil:
				delete(m.suspects, p) // gone already
			case mem.heard.After(s.since):
				m.stats.refuted.Add(1)
				m.baselessAccusers(now, s)
				delete(m.suspects, p) // refuted
			case !now.Before(s.due):
				due = append(due, p)
			}
		}
		slices.Sort(due)
		for _, p := range due {
			m.stats.suspectDrops.Add(1)
			m.removeMember(now, p, ReasonTimeout, m.members[p].epoch, false, nil)
		}
	}
	if (len(m.acc.refuted) > 0 || len(m.acc.baseless) > 0) && !now.Before(m.acc.sweepAt) {
		m.acc.sweepAt = now.Add(suspicionSweep)
		for p, h := range m.acc.refuted {
			if !now.Before(h.until) {
				delete(m.acc.refuted, p)
			}
		}
		for p, until := range m.acc.baseless {
			if !now.Before(until) {
				delete(m.acc.baseless, p)
			}
		}
	}
}

// takeRefute reports whether the heartbeat being published is a
// refutation, and clears the debt.
func (m *machine) takeRefute() bool {
	owed := m.acc.owed
	m.acc.owed = false
	return owed
}

// voidSuspect counts a suspect ignored by the rules above.
func (m *machine) voidSuspect() { m.stats.suspectsVoid.Add(1) }
