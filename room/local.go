package room

import (
	"fmt"
	"time"

	"github.com/convene-p2p/convene/ephemeral"
	"github.com/convene-p2p/convene/room/roomnet"
)

// set writes a local key (ttl > 0: the key expires ttl after the write,
// everywhere).
func (m *machine) set(now time.Time, key string, value []byte, ttl time.Duration) error {
	m.expire(now)
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
	m.expire(now)
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
	at := m.delta.allowed()
	if !now.Before(at) {
		m.publishDelta(now)
		return
	}
	m.delta.pending.set(at)
}

// publishDelta publishes the local writes not yet published (if any) as
// one delta.
func (m *machine) publishDelta(now time.Time) {
	m.delta.sent(now)
	if d := m.store.EncodeDelta(); len(d) > 0 {
		m.publish(roomnet.Message{Kind: roomnet.KindDelta, Epoch: m.epoch(), State: d})
	}
}
