package room

import (
	"slices"
	"time"

	"github.com/convene-p2p/convene/room/roomnet"
)

// restartGraceMax bounds how long a member whose probe failed keeps its
// place (and presence) before MemberLeft, so that a peer restarted with
// the same key replaces its old incarnation seamlessly (see failing).
const restartGraceMax = 500 * time.Millisecond

// failing is a member whose liveness probe failed: it is dropped at due
// (ReasonTimeout) unless a newer epoch of the same peer (a restart) or a
// successful fetch of it arrives first. Its presence is kept meanwhile:
// a peer restarted with the same key within the grace replaces its old
// state at once, with no MemberLeft/MemberJoined pair.
type failing struct {
	epoch uint64
	due   time.Time
}

// restartGrace is how long a member whose probe failed is held: 500ms, at
// most Timeout/4. The suspect about it goes out at once, and the other
// members' refutation window is as long, so the whole room drops a killed
// peer at about the same time.
func (c Config) restartGrace() time.Duration { return min(restartGraceMax, c.Timeout/4) }

// holdFailing starts the grace of member p (epoch) after its probe failed.
func (m *machine) holdFailing(now time.Time, p PeerID, epoch uint64) {
	if f, ok := m.failing[p]; ok && f.epoch == epoch {
		return
	}
	m.failing[p] = failing{epoch: epoch, due: now.Add(m.cfg.restartGrace())}
}

// reprieve ends the grace of p if msg (from src) proves a live
// incarnation: a newer epoch, or a direct fetch reply of any epoch.
func (m *machine) reprieve(p PeerID, e uint64, src source) {
	f, ok := m.failing[p]
	if !ok {
		return
	}
	if e > f.epoch || (src == fromFetch && e == f.epoch) {
		delete(m.failing, p)
	}
}

// expireFailing drops the members whose grace ended.
func (m *machine) expireFailing(now time.Time) {
	if len(m.failing) == 0 {
		return
	}
	var due []PeerID
	for p, f := range m.failing {
		mem := m.members[p]
		switch {
		case mem == nil || mem.epoch != f.epoch:
			delete(m.failing, p)
		case !now.Before(f.due):
			due = append(due, p)
		}
	}
	slices.Sort(due)
	for _, p := range due {
		m.removeMember(now, p, ReasonTimeout, m.members[p].epoch, true, nil)
	}
}

// Readmission after a timeout is held (see holdReadmit).
const (
	readmitHoldMax = time.Second
	maxHeld        = 16 // messages kept per held peer
)

// readmitHold is how long a member dropped by timeout is kept out after a
// fresh message of the same incarnation arrives: one HeartbeatInterval,
// at most 1s. The flush of a connection that survived a cut is not one
// instant: after the link returns, TCP resends what it queued in bursts
// paced by its retransmission timer, and a leaver's goodbye was seen
// arriving 0.7s after its last heartbeats on a loaded machine.
func (c Config) readmitHold() time.Duration { return min(readmitHoldMax, c.HeartbeatInterval) }

// readmit is a peer dropped by timeout whose same incarnation was heard
// again (a partition healed): its messages wait here until due, then it
// is readmitted with them, unless its goodbye arrives first.
type readmit struct {
	epoch uint64
	due   time.Time
	msgs  []heldMsg // arrival order: the latest hello/heartbeat, then later deltas
}

type heldMsg struct {
	msg    roomnet.Message
	signed []byte
}

// holdReadmit holds a gossip message from p if p is out after a timeout
// (or a suspicion, or a failed probe past its quarantine) and msg is of
// that same incarnation, and reports whether it did. When a cut of less
// than the TCP timeout heals, the connections deliver everything queued
// during the cut in one flush: the heartbeats of a member that quit on
// the other side, then its goodbye. Admitting it on the first heartbeat
// would show it joining and leaving again within milliseconds; held, its
// goodbye (remoteLeave) cancels the readmission and it never reappears.
func (m *machine) holdReadmit(now time.Time, p PeerID, msg roomnet.Message, signed []byte) bool {
	if m.members[p] != nil {
		return false
	}
	r, held := m.readmits[p]
	if held && msg.Epoch > r.epoch {
		delete(m.readmits, p) // a new incarnation: admitted at once
		return false
	}
	if !held {
		g, ok := m.gone[p]
		if !ok || g.reason == ReasonLeft || msg.Epoch != g.epoch {
			return false
		}
		if g.probed && now.Before(g.at.Add(m.cfg.quarantine())) {
			return false // quarantine: stale asks for a confirming probe
		}
		r = readmit{epoch: g.epoch, due: now.Add(m.cfg.readmitHold())}
	} else if msg.Epoch < r.epoch {
		return true // older than what is held: drop
	}
	if msg.Kind == roomnet.KindHello || msg.Kind == roomnet.KindHeartbeat {
		clear(r.msgs)
		r.msgs = r.msgs[:0]
	}
	if len(r.msgs) == maxHeld {
		// Keep the identity message (if first) and the newest deltas; a
		// heartbeat after the readmission heals what is lost.
		i := 0
		if k := r.msgs[0].msg.Kind; k == roomnet.KindHello || k == roomnet.KindHeartbeat {
			i = 1
		}
		r.msgs = append(r.msgs[:i], r.msgs[i+1:]...)
	}
	r.msgs = append(r.msgs, heldMsg{msg: msg, signed: signed})
	m.readmits[p] = r
	return true
}

// expireReadmits readmits the held peers whose hold ended: their gone
// record is dropped and their held messages are applied in order.
func (m *machine) expireReadmits(now time.Time) {
	if len(m.readmits) == 0 {
		return
	}
	var due []PeerID
	for p, r := range m.readmits {
		if !now.Before(r.due) {
			due = append(due, p)
		}
	}
	slices.Sort(due)
	for _, p := range due {
		r := m.readmits[p]
		delete(m.readmits, p)
		if g, ok := m.gone[p]; !ok || g.epoch != r.epoch || g.reason == ReasonLeft || m.members[p] != nil {
			continue
		}
		delete(m.gone, p)
		for _, h := range r.msgs {
			m.receiveState(now, p, h.msg, fromGossip, h.signed)
		}
	}
}
