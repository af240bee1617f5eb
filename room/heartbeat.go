package room

import (
	"time"

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
	m.delta.pending.clear()
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
	if m.repeatAt.isSet() && !now.Before(m.repeatAt.at.Add(-m.cfg.PublishInterval)) {
		m.repeatAt.clear()
	}
	if m.answerAt.isSet() {
		// The newcomers just answered may not be in the mesh of the
		// member that relays to them yet: say it again once they are. A
		// pending repeat (for earlier newcomers) moves later, so one
		// repeat covers them all.
		m.answerAt.clear()
		at := now.Add(answerRepeatDelay + time.Duration(m.rng.Int64N(int64(maxAnswerJitter)+1)))
		if at.After(m.repeatAt.at) {
			m.repeatAt.set(at)
		}
	}
	m.nextHeartbeat.set(now.Add(m.jitter(m.cfg.HeartbeatInterval)))
}

// jitter returns d ±10%.
func (m *machine) jitter(d time.Duration) time.Duration {
	span := int64(d / 5)
	if span <= 0 {
		return d
	}
	return d - d/10 + time.Duration(m.rng.Int64N(span+1))
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

// scheduleAnswer schedules an early heartbeat after a newcomer (or a new
// incarnation) appeared: jittered by 0–50ms, and never sooner than
// PublishInterval after the previous hello/heartbeat, so a burst of
// newcomers costs one heartbeat per window.
func (m *machine) scheduleAnswer(now time.Time) {
	if m.answerAt.isSet() {
		return
	}
	at := now.Add(time.Duration(m.rng.Int64N(int64(maxAnswerJitter) + 1)))
	if !m.lastHeartbeat.IsZero() {
		if earliest := m.lastHeartbeat.Add(m.cfg.PublishInterval); at.Before(earliest) {
			at = earliest
		}
	}
	m.answerAt.set(at)
}
