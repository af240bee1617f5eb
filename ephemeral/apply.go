package ephemeral

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Apply applies remote data (a delta or a snapshot) authored by author, the authenticated
// signer supplied by the caller, at now on the receiver's clock.
//
// Every peer the data describes must be author (else ErrForeignPeer, nothing applied); a
// delta names no peer, so it always describes its author. Data authored by Self is ignored
// (nil, nil). Decoder errors (ErrMalformed, ErrTooLarge) and limit errors (ErrTooManyKeys:
// the result would hold more live keys than the limit; ErrTooManyPeers) leave the store
// unchanged. Stale and duplicate entries are skipped silently.
//
// Apply counts as Heard(now, author), except for data the store ignores as a whole: data
// from an older epoch than held (a replay of a previous run), data of a peer that left
// (Remove with CauseLeave) from the epoch it left in, data of a timed-out peer that
// carries nothing newer than what was dropped, and a snapshot with no record. It returns
// one Change (CauseRemote) per affected peer, only non-empty ones.
func (s *Store) Apply(now time.Time, author PeerID, data []byte) ([]Change, error) {
	if err := checkPeerID(author); err != nil {
		return nil, fmt.Errorf("ephemeral: Apply: author: %w", err)
	}
	if author == s.self {
		return nil, nil
	}
	sc := s.borrow(data)
	var cs []Change
	err := decode(data, &s.lim, &s.dec, author)
	if err == nil {
		cs, err = s.apply(toNanos(now), author)
	}
	s.giveBack(sc)
	return cs, err
}

// ApplyTrusted applies a multi-peer snapshot without an author check: only for data the
// caller itself produced or verified (tests, benchmarks, state hand-off); never for network
// input. Records of Self are skipped. A delta is rejected (ErrMalformed): it names no peer.
func (s *Store) ApplyTrusted(now time.Time, data []byte) ([]Change, error) {
	sc := s.borrow(data)
	var cs []Change
	err := decode(data, &s.lim, &s.dec, "")
	if err == nil && s.dec.kind != kindSnapshot {
		err = fmt.Errorf("%w: ApplyTrusted takes a snapshot, got a delta (a delta names no peer)", ErrMalformed)
	}
	if err == nil {
		cs, err = s.apply(toNanos(now), "")
	}
	s.giveBack(sc)
	return cs, err
}

// Scratch memory. Decoding and applying a message needs scratch in proportion to its
// entries. A store keeps its own scratch only while it is small (keepScratch elements);
// a message that may need more (a newcomer's snapshot of a whole room) borrows scratch
// from a pool shared by all stores and gives it back afterwards. So a store does not hold
// on to the memory of its largest message, and fresh stores share scratch instead of
// allocating their own. Pooled scratch may point at data of a finished message until it
// is reused or the pool is collected; nothing reads it.
const keepScratch = 256

// scratch is one set of decode and change buffers.
type scratch struct {
	recs  []wireRecord
	ents  []wireEntry
	items []chItem
	crecs []chRec
}

var scratchPool sync.Pool // of *scratch

// swap exchanges the buffers of sc and s.
func (s *Store) swap(sc *scratch) {
	s.dec.recs, sc.recs = sc.recs, s.dec.recs
	s.dec.ents, sc.ents = sc.ents, s.dec.ents
	s.chg.items, sc.items = sc.items, s.chg.items
	s.chg.recs, sc.crecs = sc.crecs, s.chg.recs
}

// borrow lends s pooled scratch if data may need more than s keeps; it returns what
// giveBack needs (nil: nothing borrowed).
func (s *Store) borrow(data []byte) *scratch {
	if len(data) <= keepScratch*minEntrySize {
		return nil
	}
	sc, _ := scratchPool.Get().(*scratch)
	if sc == nil {
		sc = new(scratch)
	}
	s.swap(sc) // sc now holds the store's own small buffers
	return sc
}

// giveBack returns borrowed scratch to the pool (and puts the store's own back), or moves
// the store's own scratch to the pool if it grew large.
func (s *Store) giveBack(sc *scratch) {
	if sc != nil {
		s.swap(sc)
		s.dec.data = nil
		scratchPool.Put(sc)
		return
	}
	if cap(s.dec.recs) > keepScratch || cap(s.dec.ents) > keepScratch ||
		cap(s.chg.items) > keepScratch || cap(s.chg.recs) > keepScratch {
		sc = new(scratch)
		s.swap(sc)
		s.dec.data = nil
		scratchPool.Put(sc)
	}
}

// arenaSize is what committing a message needs in fresh memory.
type arenaSize struct {
	peers, ents, str, val int
}

// apply plans every record of s.dec against the held state, checks the limits, then
// commits. author is the delta's author ("" for ApplyTrusted).
func (s *Store) apply(now nanos, author PeerID) ([]Change, error) {
	d := &s.dec
	snapshot := d.kind == kindSnapshot
	var sz arenaSize
	for i := range d.recs {
		r := &d.recs[i]
		if r.peer != nil && string(r.peer) == string(s.self) {
			r.skip = true
			continue
		}
		live := s.plan(r, d.ents[r.first:r.end], snapshot, author, &sz)
		if r.skip {
			continue
		}
		if live > s.lim.MaxKeysPerPeer {
			return nil, fmt.Errorf("%w: peer %x would hold %d live keys (limit %d)", ErrTooManyKeys, string(r.id(author)), live, s.lim.MaxKeysPerPeer)
		}
	}
	if sz.peers > 0 && len(s.peers)+sz.peers > s.lim.MaxPeers {
		return nil, fmt.Errorf("%w: %d new peers with %d held (limit %d)", ErrTooManyPeers, sz.peers, len(s.peers), s.lim.MaxPeers)
	}

	s.observe(now)
	if sz.peers > len(s.peers) {
		// Many new peers at once (a newcomer's first snapshot): size the map once
		// instead of rehashing it on the way.
		s.resizePeers(len(s.peers) + sz.peers)
	}
	var a arena
	a.init(sz)
	s.intern.own = 0
	s.chg.reset()
	s.chg.items = slices.Grow(s.chg.items, len(d.ents))
	s.chg.recs = slices.Grow(s.chg.recs, len(d.recs))
	for i := range d.recs {
		if r := &d.recs[i]; !r.skip {
			s.commit(now, r, d.ents[r.first:r.end], snapshot, author, &a)
		}
	}
	// d keeps pointing into data until the next decode (or giveBack, after a large message):
	// at most one message is retained, and only read while it is applied.
	return s.chg.build(), nil
}

// id returns the record's peer ID (author for a delta).
func (r *wireRecord) id(author PeerID) []byte {
	if r.peer == nil {
		return []byte(author)
	}
	return r.peer
}

// held returns the held state of r's peer, or nil.
func (s *Store) held(r *wireRecord, author PeerID) *peerState {
	if r.peer == nil {
		return s.peers[string(author)]
	}
	return s.peers[string(r.peer)]
}

func (s *Store) departed(r *wireRecord, author PeerID) (departure, bool) {
	if r.peer == nil {
		d, ok := s.gone.m[string(author)]
		return d, ok
	}
	d, ok := s.gone.m[string(r.peer)]
	return d, ok
}

// plan decides, without changing anything, what r does to its peer: it fills the plan
// fields of r and ents, adds the fresh memory needed to sz, and returns the number of live
// keys the peer would hold.
func (s *Store) plan(r *wireRecord, ents []wireEntry, snapshot bool, author PeerID, sz *arenaSize) int {
	d := &s.dec
	r.p, r.skip, r.reset, r.structural = s.held(r, author), false, false, false
	var (
		epoch, floor, minEpoch uint64
		live                   int
		held                   []entry
	)
	if p := r.p; p != nil {
		epoch, floor, minEpoch, live, held = p.epoch, p.floor, p.minEpoch, p.live, p.entries
	} else if dep, ok := s.departed(r, author); ok {
		epoch, floor, minEpoch = dep.epoch, dep.high, dep.minEpoch
	}
	if r.epoch < epoch || r.epoch < minEpoch {
		r.skip = true
		return 0
	}
	if r.epoch > epoch {
		// A newer epoch replaces everything held: every entry wins.
		r.reset = true
		live = 0
		for i := range ents {
			w := &ents[i]
			w.accept, w.found, w.pos = true, false, i
			if !w.tomb {
				live++
			}
			sz.str += int(w.klen)
			sz.val += int(w.vlen)
		}
		sz.ents += len(ents)
		if r.p == nil {
			sz.peers++
			if author == "" {
				sz.str += len(r.peer)
			}
		}
		return live
	}

	// Same epoch: merge the sorted entries with the sorted held keys.
	changed := false
	h := 0
	absent := func(e *entry) {
		// A snapshot is complete through r.complete: a held key it lacks, written at or
		// before that, has been deleted.
		if snapshot && e.counter <= r.complete {
			r.structural, changed = true, true
			if !e.tomb {
				live--
			}
		}
	}
	for i := range ents {
		w := &ents[i]
		key := d.key(w)
		for h < len(held) && held[h].key < string(key) {
			absent(&held[h])
			h++
		}
		w.accept, w.pos = false, h
		if h < len(held) && held[h].key == string(key) {
			w.found = true
			e := &held[h]
			h++
			if w.counter <= e.counter {
				continue // stale or duplicate
			}
			w.accept, changed = true, true
			if e.tomb && !w.tomb {
				live++
			} else if !e.tomb && w.tomb {
				live--
			}
			if !w.tomb && cap(e.value) < int(w.vlen) {
				sz.val += int(w.vlen)
			}
			continue
		}
		w.found = false
		// A key not held: new unless the floor says it is stale. A snapshot complete
		// through at least the floor knows better than the floor.
		if w.counter > floor || (snapshot && r.complete >= floor) {
			w.accept, changed, r.structural = true, true, true
			if !w.tomb {
				live++
			}
			sz.str += int(w.klen)
			sz.val += int(w.vlen)
		}
	}
	for ; h < len(held); h++ {
		absent(&held[h])
	}
	if snapshot && r.complete > floor {
		changed = true
	}
	if r.p == nil {
		if !changed {
			r.skip = true // a departed peer's old news: do not bring it back
			return 0
		}
		sz.peers++
		if author == "" {
			sz.str += len(r.peer)
		}
	}
	return live
}

// commit applies the plan of r to its peer and records the change.
func (s *Store) commit(now nanos, r *wireRecord, ents []wireEntry, snapshot bool, author PeerID, a *arena) {
	d := &s.dec
	p := r.p
	if p == nil {
		p = a.peer()
		if author != "" {
			// Apply: every record is the author's (decode checked), and author is
			// already a string of its own.
			p.id = author
		} else {
			p.id = PeerID(a.str(r.peer))
		}
		s.adopt(p)
	}
	s.touch(p, now)
	ttl := !p.ttlMin.IsZero()
	c := &s.chg
	c.begin()
	switch {
	case r.reset:
		old := p.entries
		nes := a.entries(len(ents))
		h := 0
		for i := range ents {
			w := &ents[i]
			key := d.key(w)
			for h < len(old) && old[h].key < string(key) {
				c.classify(old[h].key, !old[h].tomb, false)
				h++
			}
			wasLive := false
			if h < len(old) && old[h].key == string(key) {
				wasLive = !old[h].tomb
				h++
			}
			e := &nes[i]
			e.key = s.key(key, a)
			fill(e, w, d.value(w), now, a)
			c.classify(e.key, wasLive, !w.tomb)
			ttl = ttl || w.ttl > 0
		}
		for ; h < len(old); h++ {
			c.classify(old[h].key, !old[h].tomb, false)
		}
		p.entries = nes
		p.epoch, p.high, p.floor, p.complete = r.epoch, 0, 0, 0
		p.minEpoch = max(p.minEpoch, r.epoch)
		p.recount()
	case r.structural:
		held := p.entries
		buf := s.entBuf[:0]
		h := 0
		keep := func(e *entry) {
			if snapshot && e.counter <= r.complete {
				c.classify(e.key, !e.tomb, false)
				return
			}
			buf = append(buf, *e)
		}
		for i := range ents {
			w := &ents[i]
			for ; h < w.pos; h++ {
				keep(&held[h])
			}
			switch {
			case w.found:
				e := held[h]
				h++
				if w.accept {
					wasLive := !e.tomb
					fill(&e, w, d.value(w), now, a)
					c.classify(e.key, wasLive, !w.tomb)
					ttl = ttl || w.ttl > 0
				}
				buf = append(buf, e)
			case w.accept:
				e := entry{key: s.key(d.key(w), a)}
				fill(&e, w, d.value(w), now, a)
				c.classify(e.key, false, !w.tomb)
				ttl = ttl || w.ttl > 0
				buf = append(buf, e)
			}
		}
		for ; h < len(held); h++ {
			keep(&held[h])
		}
		p.entries = append(p.entries[:0], buf...)
		clear(buf)
		s.entBuf = buf[:0]
		p.recount()
	default:
		for i := range ents {
			w := &ents[i]
			if !w.accept {
				continue
			}
			e := &p.entries[w.pos]
			wasLive := !e.tomb
			fill(e, w, d.value(w), now, a)
			c.classify(e.key, wasLive, !w.tomb)
			ttl = ttl || w.ttl > 0
			switch {
			case wasLive && w.tomb:
				p.live--
				p.tombs++
			case !wasLive && !w.tomb:
				p.live++
				p.tombs--
			}
		}
	}
	for i := range ents {
		p.high = max(p.high, ents[i].counter)
	}
	if snapshot {
		p.floor = max(p.floor, r.complete)
		p.complete = max(p.complete, r.complete)
		p.high = max(p.high, r.complete)
	}
	s.capTombs(p)
	if ttl {
		s.retime(p)
	}
	c.end(p.id, CauseRemote)
}

// fill writes the accepted wire entry w, with value v, into e (e.key is already set).
func fill(e *entry, w *wireEntry, v []byte, now nanos, a *arena) {
	e.counter = w.counter
	e.deadline = 0
	if w.tomb {
		e.tomb = true
		e.value = e.value[:0]
		return
	}
	e.tomb = false
	if cap(e.value) >= len(v) {
		e.value = append(e.value[:0], v...)
	} else {
		e.value = a.value(v)
	}
	if w.ttl > 0 {
		e.deadline = now.add(w.ttl)
	}
}

// arena hands out the fresh memory one message needs in a few allocations: peer states,
// entry slices, one buffer for the new keys and peer IDs, one for the new values. Pieces
// are carved with full slice expressions, so growing one never touches another. If the
// plan underestimated anything, it falls back to ordinary allocation.
type arena struct {
	one   *peerState // a lone new peer, allocated in one block with its entries and values
	peers []peerState
	ents  []entry
	val   []byte
	sb    strings.Builder // new keys and peer IDs; allocated on first use
	left  int             // string bytes the plan still expects
	small bool            // the message needs few string bytes: keys may be interned from sb
}

// Blocks for a lone new peer with few entries (the common single-peer message): its
// state, entries and value bytes in one allocation. The value arrays fill the block up to
// its allocation size class (288 and 480 bytes).
type (
	block2 struct {
		p peerState
		e [2]entry
		v [32]byte
	}
	block4 struct {
		p peerState
		e [4]entry
		v [96]byte
	}
)

func (a *arena) init(sz arenaSize) {
	a.left, a.small = sz.str, sz.str <= internPinMax
	switch {
	case sz.peers == 1 && sz.ents <= len(block2{}.e) && sz.val <= len(block2{}.v):
		b := new(block2)
		a.one, a.ents, a.val = &b.p, b.e[:sz.ents], b.v[:sz.val]
		return
	case sz.peers == 1 && sz.ents <= len(block4{}.e) && sz.val <= len(block4{}.v):
		b := new(block4)
		a.one, a.ents, a.val = &b.p, b.e[:sz.ents], b.v[:sz.val]
		return
	}
	if sz.peers > 0 {
		a.peers = make([]peerState, sz.peers)
	}
	if sz.ents > 0 {
		a.ents = make([]entry, sz.ents)
	}
	if sz.val > 0 {
		a.val = make([]byte, sz.val)
	}
}

func (a *arena) peer() *peerState {
	if p := a.one; p != nil {
		a.one = nil
		return p
	}
	if len(a.peers) == 0 {
		return new(peerState)
	}
	p := &a.peers[0]
	a.peers = a.peers[1:]
	return p
}

func (a *arena) entries(n int) []entry {
	if len(a.ents) < n {
		return make([]entry, n)
	}
	e := a.ents[:n:n]
	a.ents = a.ents[n:]
	return e
}

// str returns b as a string appended to the arena's string buffer. The buffer is sized
// for every string the plan expects on first use; strings already handed out stay valid if
// it has to grow (a strings.Builder never rewrites what it holds).
func (a *arena) str(b []byte) string {
	if a.sb.Cap()-a.sb.Len() < len(b) {
		a.sb.Grow(max(len(b), a.left))
	}
	n := a.sb.Len()
	a.sb.Write(b)
	a.left -= len(b)
	return a.sb.String()[n:]
}

func (a *arena) value(b []byte) []byte {
	if len(a.val) < len(b) {
		return append([]byte(nil), b...)
	}
	v := a.val[:len(b):len(b)]
	a.val = a.val[len(b):]
	copy(v, b)
	return v
}

// Keys are interned: peers of one room mostly use the same few keys ("cursor", "name"),
// so the store remembers recently seen keys in a small direct-mapped table and shares one
// string among every entry with that key. A miss costs what a key cost anyway; a table
// thrashed by many distinct keys only stops helping. To keep the table from holding large
// buffers alive, it takes a key carved from the arena only when the message needs few
// string bytes (internPinMax); otherwise the first internOwnMax misses of a message get
// a copy of their own for the table, and later misses are not remembered.
const (
	internSlots  = 64  // a power of two
	internPinMax = 256 // bytes: a string buffer this small may be held by the table
	internOwnMax = 4   // own copies made per message
)

type internTable struct {
	keys [internSlots]string
	own  int // own copies made in the current message
}

// internSlot hashes key to a slot: FNV-1a of its length and its first 16 bytes.
func internSlot(key []byte) int {
	h := (2166136261 ^ uint32(len(key))) * 16777619
	for _, c := range key[:min(len(key), 16)] {
		h = (h ^ uint32(c)) * 16777619
	}
	return int(h & (internSlots - 1))
}

// key returns key as a string for a new entry: the interned string if the store has one.
func (s *Store) key(key []byte, a *arena) string {
	t := &s.intern
	i := internSlot(key)
	if k := t.keys[i]; k == string(key) {
		a.left -= len(key)
		return k
	}
	switch {
	case a.small:
		t.keys[i] = a.str(key)
		return t.keys[i]
	case t.own < internOwnMax:
		t.own++
		a.left -= len(key)
		t.keys[i] = string(key)
		return t.keys[i]
	}
	return a.str(key)
}

// Small results of Apply (a few peers, a few keys) are carved from slabs: one allocation
// per oneChangeSlab Changes and one per keySlab keys. A caller that keeps one result keeps
// its slabs alive (3 KiB and 2 KiB); every piece is handed out once and never touched
// again, and its slices are capped, so a caller's append reallocates.
const (
	oneChangeSlab = 32
	keySlab       = 128
	// smallChanges and smallKeys bound what is carved from the slabs.
	smallChanges = 4
	smallKeys    = 16
)

// changeScratch collects the changes of one operation with few allocations.
type changeScratch struct {
	slab  []Change // oneChangeSlab pieces not handed out yet
	kslab []string // keySlab pieces not handed out yet
	items []chItem // keys of every record, in visiting (sorted) order
	recs  []chRec
	cur   int    // first item of the record being built
	n     [3]int // items of the record being built, by kind
}

type chItem struct {
	key  string
	kind uint8 // chAdded, chUpdated, chRemoved
}

const (
	chAdded = iota
	chUpdated
	chRemoved
)

type chRec struct {
	peer       PeerID
	start, end int // items
	n          [3]int
	cause      Cause
}

// reset empties the scratch. Stale strings beyond the length are not cleared: they are
// keys the store holds or held, bounded by the largest change so far, and clearing them
// would cost write barriers on the hot path.
func (c *changeScratch) reset() {
	c.items, c.recs, c.cur = c.items[:0], c.recs[:0], 0
}

func (c *changeScratch) begin() { c.cur, c.n = len(c.items), [3]int{} }

// classify records what happened to key: it was or was not live, and now is or is not.
func (c *changeScratch) classify(key string, was, is bool) {
	var kind uint8
	switch {
	case !was && is:
		kind = chAdded
	case was && is:
		kind = chUpdated
	case was && !is:
		kind = chRemoved
	default:
		return
	}
	c.items = append(c.items, chItem{key, kind})
	c.n[kind]++
}

// end closes the record for peer, keeping it only if it has keys.
func (c *changeScratch) end(peer PeerID, cause Cause) {
	if len(c.items) == c.cur {
		return
	}
	c.recs = append(c.recs, chRec{peer: peer, start: c.cur, end: len(c.items), n: c.n, cause: cause})
	c.cur = len(c.items)
}

// build returns the collected changes in memory the store never touches again: for the
// common single-key case a slab element, otherwise two allocations. Every path visits keys
// in sorted order, so each list comes out sorted.
func (c *changeScratch) build() []Change {
	if len(c.recs) == 0 {
		return nil
	}
	var (
		out  []Change
		keys []string
	)
	if nr, nk := len(c.recs), len(c.items); nr <= smallChanges && nk <= smallKeys {
		if len(c.slab) < nr {
			c.slab = make([]Change, oneChangeSlab)
		}
		if len(c.kslab) < nk {
			c.kslab = make([]string, keySlab)
		}
		out, c.slab = c.slab[:nr:nr], c.slab[nr:]
		keys, c.kslab = c.kslab[:nk:nk], c.kslab[nk:]
	} else {
		out = make([]Change, len(c.recs))
		keys = make([]string, len(c.items))
	}
	off := 0
	for i, r := range c.recs {
		ch := Change{Peer: r.peer, Cause: r.cause}
		lists := [3]*[]string{&ch.Added, &ch.Updated, &ch.Removed}
		for kind, n := range r.n {
			if n == 0 {
				continue
			}
			list := keys[off : off : off+n]
			for _, it := range c.items[r.start:r.end] {
				if int(it.kind) == kind {
					list = append(list, it.key)
				}
			}
			*lists[kind] = list
			off += n
		}
		out[i] = ch
	}
	c.reset()
	return out
}
