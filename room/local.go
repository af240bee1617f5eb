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
