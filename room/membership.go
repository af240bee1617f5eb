package room

import (
	"maps"
	"time"

	"github.com/convene-p2p/convene/ephemeral"
	"github.com/convene-p2p/convene/room/roomnet"
)

// maxGone bounds how many removed peers the machine remembers.
const maxGone = 4096

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

// receiveState handles a message that carries p's own state (a hello,
// heartbeat, delta or fetch reply, directly or relayed): it
// admits p as a member if needed, applies its state and refreshes its
// liveness. signed is the message's signed form to keep for relaying (nil
// for a fetch reply, which is not signed by its author's pubsub key).
func (m *machine) receiveState(now time.Time, p PeerID, msg roomnet.Message, src source, signed []byte) {
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
	m.memberExpiry.lower(mem.heard.Add(m.cfg.Timeout))
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
	m.expire(now)
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
		m.helloAt.set(now.Add(m.cfg.PublishInterval))
	}
}

// peerDown handles the transport hint that p's connection closed: probe
// it; if the probe fails, it is removed at once.
func (m *machine) peerDown(now time.Time, p PeerID) {
	m.expire(now)
	if m.status == Closed {
		return
	}
	delete(m.retries, p)
	if m.members[p] != nil {
		m.requestFetch(now, p, fetchProbe)
	}
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
