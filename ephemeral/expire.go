package ephemeral

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Heard records that a message from peer arrived at now (receiver's clock): the peer's
// liveness deadline becomes now+Timeout. It creates the peer if new (ErrTooManyPeers if the
// store is full). Heard of Self does nothing.
func (s *Store) Heard(now time.Time, peer PeerID) error {
	if err := checkPeerID(peer); err != nil {
		return fmt.Errorf("ephemeral: Heard: %w", err)
	}
	n := toNanos(now)
	if peer == s.self {
		s.observe(n)
		return nil
	}
	p := s.peers[string(peer)]
	if p == nil {
		if len(s.peers) >= s.lim.MaxPeers {
			return fmt.Errorf("%w: %d peers (limit %d)", ErrTooManyPeers, len(s.peers), s.lim.MaxPeers)
		}
		p = &peerState{id: peer}
		s.adopt(p)
	}
	s.observe(n)
	s.touch(p, n)
	return nil
}

// adopt seeds a new peer from what the store remembers of its departure and adds it.
func (s *Store) adopt(p *peerState) {
	if d, ok := s.gone.m[string(p.id)]; ok {
		p.epoch, p.high, p.floor, p.minEpoch = d.epoch, d.high, d.high, d.minEpoch
		s.gone.remove(string(p.id))
	}
	if n := len(s.peers); n >= peersGrowFrom && n >= s.peersCap {
		// A big room, one peer at a time (a newcomer applying every author's own
		// snapshot): grow the map in a few large steps rather than by doubling.
		s.resizePeers(min(s.lim.MaxPeers, peersGrowBy*n))
	}
	s.peers[string(p.id)] = p
}

// The peers map is left to grow by itself up to peersGrowFrom peers; from there, adopt
// sizes it for peersGrowBy times its peers at once (at most MaxPeers).
const (
	peersGrowFrom = 64
	peersGrowBy   = 4
)

// resizePeers rebuilds the peers map with room for n peers, if that is more than it has.
func (s *Store) resizePeers(n int) {
	if n <= s.peersCap || n <= len(s.peers) {
		return
	}
	m := make(map[string]*peerState, n)
	maps.Copy(m, s.peers)
	s.peers, s.peersCap = m, n
}

// touch sets p's last-heard time to now (never backwards) and moves its deadline.
func (s *Store) touch(p *peerState, now nanos) {
	if p.heard == 0 {
		p.heard = now
		s.addDeadline(now.add(s.timeout))
		return
	}
	if now > p.heard {
		s.dropDeadline(p.heard.add(s.timeout))
		p.heard = now
		s.addDeadline(now.add(s.timeout))
	}
}

// Remove drops a remote peer and all its state now (e.g. with CauseLeave when it said
// goodbye). It returns a Change with the peer's keys Removed and Gone set. Removing Self or
// an unknown peer returns an empty Change.
//
// After a Remove with CauseLeave, data from the peer's current or an older epoch is
// ignored (a late message cannot bring back a peer that left); after any other cause, data
// from the same epoch that carries nothing newer than what was held is ignored. This memory
// is bounded: the store remembers at most Limits.MaxPeers departed peers.
func (s *Store) Remove(peer PeerID, cause Cause) Change {
	p := s.peers[string(peer)]
	if p == nil || p == s.me {
		return Change{}
	}
	ch := Change{Peer: p.id, Removed: liveKeys(p), Cause: cause, Gone: true}
	s.drop(p, cause == CauseLeave)
	return ch
}

// drop removes p from the store and remembers its version.
func (s *Store) drop(p *peerState, left bool) {
	delete(s.peers, string(p.id))
	d := departure{epoch: p.epoch, high: p.high, minEpoch: max(p.minEpoch, p.epoch)}
	if left {
		d.minEpoch = max(d.minEpoch, p.epoch+1)
	}
	s.gone.add(string(p.id), d)
	s.dropDeadline(p.heard.add(s.timeout))
	s.dropDeadline(p.ttlMinN())
}

// liveKeys returns p's keys that are not tombstones, sorted (nil if none).
func liveKeys(p *peerState) []string {
	if p.live == 0 {
		return nil
	}
	keys := make([]string, 0, p.live)
	for i := range p.entries {
		if !p.entries[i].tomb {
			keys = append(keys, p.entries[i].key)
		}
	}
	return keys
}

// Expire drops remote peers silent for >= Timeout (one Change each: their keys Removed,
// Gone, CauseTimeout) and keys whose TTL passed, local or remote (Removed, CauseTimeout).
// Deadlines are inclusive: something expires when !now.Before(deadline). Changes are
// sorted by peer. An expired remote key keeps a tombstone, so a late copy of the same write
// cannot bring it back.
func (s *Store) Expire(now time.Time) []Change {
	n := toNanos(now)
	s.observe(n)
	if !s.lbSet || n < s.lbN {
		return nil
	}
	var out []Change
	for _, p := range s.peers {
		if p != s.me && n >= p.heard.add(s.timeout) {
			out = append(out, Change{Peer: p.id, Removed: liveKeys(p), Cause: CauseTimeout, Gone: true})
			s.drop(p, false)
			continue
		}
		if t := p.ttlMinN(); t != 0 && n >= t {
			if removed := s.expireKeys(p, n); len(removed) > 0 {
				out = append(out, Change{Peer: p.id, Removed: removed, Cause: CauseTimeout})
			}
		}
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(string(a.Peer), string(b.Peer)) })
	s.recomputeBound()
	return out
}

// expireKeys removes p's keys whose TTL passed and returns them, sorted. A remote key (or a
// local one not sent yet) becomes a tombstone with the same version; a local key already
// sent is simply forgotten, since every receiver expires it on its own clock.
func (s *Store) expireKeys(p *peerState, now nanos) []string {
	var removed []string
	w := 0
	for i := range p.entries {
		e := p.entries[i]
		if !e.tomb && e.deadline != 0 && now >= e.deadline {
			removed = append(removed, e.key)
			e.value, e.deadline = nil, 0
			if p == s.me && !e.dirty {
				continue
			}
			e.tomb = true
		}
		p.entries[w] = e
		w++
	}
	clear(p.entries[w:])
	p.entries = p.entries[:w]
	p.recount()
	s.capTombs(p)
	p.ttlMin = p.earliestTTL()
	return removed
}

// capTombs drops the oldest tombstones beyond Limits.MaxKeysPerPeer. For a remote peer the
// floor rises to the dropped counter, so an older write of a key the store no longer
// remembers is treated as stale (a later snapshot of that peer repairs any key this wrongly
// skips). For self, a dropped tombstone is simply not sent.
func (s *Store) capTombs(p *peerState) {
	for p.tombs > s.lim.MaxKeysPerPeer {
		j := oldestTomb(p.entries)
		if p == s.me {
			if p.entries[j].dirty {
				s.dirty--
			}
		} else {
			p.floor = max(p.floor, p.entries[j].counter)
		}
		p.entries = slices.Delete(p.entries, j, j+1)
		p.tombs--
	}
}

// NextDeadline returns the earliest time Expire would change something: a remote peer's
// liveness deadline or a TTL deadline, in UTC, without a monotonic clock reading (see the
// package documentation, "Two clocks"). ok is false when there is none.
func (s *Store) NextDeadline() (deadline time.Time, ok bool) {
	if !s.lbExact {
		s.recomputeBound()
	}
	return s.lb, s.lbSet
}

// retime recomputes p's earliest TTL deadline and updates the store's bound.
func (s *Store) retime(p *peerState) {
	old := p.ttlMin
	p.ttlMin = p.earliestTTL()
	if !old.Equal(p.ttlMin) {
		if !old.IsZero() {
			s.dropDeadline(nanos(old.UnixNano()))
		}
		s.addDeadline(p.ttlMinN())
	}
}

// addDeadline records a new deadline t (zero: none).
func (s *Store) addDeadline(t nanos) {
	if t == 0 {
		return
	}
	if !s.lbSet || t < s.lbN {
		s.lbN, s.lbSet, s.lbExact = t, true, true
		s.lb = t.time()
	}
}

// dropDeadline records that deadline t (zero: none) went away or moved later. The bound
// stays a valid lower bound; it is only no longer known to be exact.
func (s *Store) dropDeadline(t nanos) {
	if t != 0 && s.lbSet && t == s.lbN {
		s.lbExact = false
	}
}

// recomputeBound scans every peer for the exact earliest deadline.
func (s *Store) recomputeBound() {
	s.lb, s.lbN, s.lbSet, s.lbExact = time.Time{}, 0, false, true
	for _, p := range s.peers {
		if p != s.me {
			s.addDeadline(p.heard.add(s.timeout))
		}
		s.addDeadline(p.ttlMinN())
	}
	s.lbExact = true
}

// departure is what the store remembers of a dropped peer.
type departure struct {
	epoch, high uint64
	minEpoch    uint64 // data from a lower epoch is ignored
	seq         uint64
}

// departures is a bounded memory of dropped peers, oldest forgotten first.
type departures struct {
	m   map[string]departure
	q   []depRef // insertion order; stale refs (seq mismatch) are skipped
	seq uint64
	max int
}

type depRef struct {
	id  string
	seq uint64
}

func (g *departures) init(max int) {
	g.m = make(map[string]departure)
	g.max = max
}

func (g *departures) add(id string, d departure) {
	g.seq++
	d.seq = g.seq
	g.m[id] = d
	g.q = append(g.q, depRef{id, g.seq})
	for len(g.m) > g.max {
		r := g.q[0]
		g.q = g.q[1:]
		if cur, ok := g.m[r.id]; ok && cur.seq == r.seq {
			delete(g.m, r.id)
		}
	}
	if len(g.q) > 2*g.max+16 {
		live := g.q[:0]
		for _, r := range g.q {
			if cur, ok := g.m[r.id]; ok && cur.seq == r.seq {
				live = append(live, r)
			}
		}
		clear(g.q[len(live):])
		g.q = live
	}
}

func (g *departures) remove(id string) { delete(g.m, id) }
