package room

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/convene-p2p/convene/ephemeral"
	"github.com/convene-p2p/convene/room/roomnet"
)

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
	m.helloAt, m.answerAt, m.repeatAt, m.lingerEnd = deadline{}, deadline{}, deadline{}, deadline{}
	m.delta.reset()
	m.selfSnap = nil
	m.publishHello(now)
}

// leave says goodbye: publishes the leave, stops heartbeats and deltas,
// clears the local presence and starts the linger.
func (m *machine) leave(now time.Time) error {
	m.expire(now)
	if err := m.errIfNotJoined(); err != nil {
		return err
	}
	if m.delta.pending.isSet() {
		// The trailing edge is always sent, a goodbye or not: a write
		// still held by the pacing goes out before the goodbye (one
		// publish over the pace at most), so those who see the goodbye
		// have seen the last value written before it.
		m.publishDelta(now)
	}
	m.publish(roomnet.Message{Kind: roomnet.KindLeave, Epoch: m.epoch()})
	m.status = Left
	m.dirtyStatus, m.dirtyMembers = true, true
	m.nextHeartbeat, m.answerAt, m.repeatAt, m.helloAt, m.delta.pending = deadline{}, deadline{}, deadline{}, deadline{}, deadline{}
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
		m.lingerEnd.set(now.Add(m.cfg.Linger))
	}
	return nil
}

// rejoin makes the local peer a member again during the linger, with a
// new epoch (greater than the previous one). Rejoining a joined room is a
// no-op.
func (m *machine) rejoin(now time.Time, epoch uint64) error {
	m.expire(now)
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
