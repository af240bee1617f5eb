package room

import (
	"maps"
	"slices"
	"time"

	"github.com/convene-p2p/convene/ephemeral"
	"github.com/convene-p2p/convene/room/roomnet"
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
	m.expire(now)
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

// relayMaxAge bounds the age of what a member relays in its Fetch replies:
// it relays only members it heard from directly (or by fetch) within
// HeartbeatInterval×1.2 (a live member's heartbeat period with its ±10%
// jitter and some delivery delay), at most Timeout/2. A receiver counts a
// relayed message of a new member as heard that long ago, and a relayed
// message of a known member as no sign of life at all, so relays can
// never keep a dead member alive: a member admitted through relays alone
// times out Timeout−relayMaxAge after its admission, and is never relayed
// on by the members that admitted it that way.
func (c Config) relayMaxAge() time.Duration {
	return min(c.HeartbeatInterval+c.HeartbeatInterval/5, c.Timeout/2)
}

// relayable reports whether member p may be relayed: heard from less
// than the age bound ago (after oldest), and not failing or suspected.
func (m *machine) relayable(p PeerID, oldest time.Time) bool {
	mem := m.members[p]
	if mem == nil || !mem.heard.After(oldest) {
		return false
	}
	if _, ok := m.failing[p]; ok {
		return false
	}
	_, ok := m.suspects[p]
	return !ok
}
