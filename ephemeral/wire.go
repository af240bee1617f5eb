package ephemeral

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Wire format (docs/PROTOCOL.md, "Presence encoding", documents it byte by byte).
//
//	message  = version:u8 kind:u8 body            version = 1
//	delta    (kind 1) = epoch:uv count:uv entry*count
//	snapshot (kind 2) = count:uv record*count      records in strictly increasing peer order
//	record   = peerLen:uv peer epoch:uv complete:uv count:uv entry*count
//	entry    = head:uv key counter:uv [ttlMs:uv] [valueLen:uv value]
//	           head = keyLen<<2 | flags; flags bit0 = tombstone (no value), bit1 = ttl present
//	           entries in strictly increasing key order (bytewise)
//
// uv is an unsigned LEB128 varint (encoding/binary Uvarint) in its shortest form.
const (
	formatVersion = 1
	kindDelta     = 1
	kindSnapshot  = 2

	flagTomb = 1
	flagTTL  = 2

	// maxTTLMillis keeps a TTL representable as a time.Duration.
	maxTTLMillis = math.MaxInt64 / int64(time.Millisecond)
)

// uvarintLen is the encoded size of v.
func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// ttlMillis rounds a positive remaining duration up to whole milliseconds, at most
// maxTTLMillis.
func ttlMillis(d time.Duration) uint64 {
	ms := d / time.Millisecond
	if d%time.Millisecond != 0 {
		ms++
	}
	return uint64(min(int64(ms), maxTTLMillis))
}

// wireTTL returns what an entry's TTL is on the wire: 0 for none; ok is false when the
// entry has already expired on the store's clock.
func (s *Store) wireTTL(e *entry) (ms uint64, ok bool) {
	if e.deadline == 0 {
		return 0, true
	}
	if e.deadline <= s.now {
		return 0, false
	}
	rem := time.Duration(e.deadline - s.now)
	if rem <= 0 { // the difference overflowed: saturate, as time.Time.Sub does
		rem = math.MaxInt64
	}
	return ttlMillis(rem), true
}

func entrySize(key string, counter uint64, ttlMs uint64, value []byte, tomb bool) int {
	n := uvarintLen(uint64(len(key))<<2) + len(key) + uvarintLen(counter)
	if ttlMs > 0 {
		n += uvarintLen(ttlMs)
	}
	if !tomb {
		n += uvarintLen(uint64(len(value))) + len(value)
	}
	return n
}

func appendEntry(b []byte, key string, counter uint64, ttlMs uint64, value []byte, tomb bool) []byte {
	head := uint64(len(key)) << 2
	if tomb {
		head |= flagTomb
	}
	if ttlMs > 0 {
		head |= flagTTL
	}
	b = binary.AppendUvarint(b, head)
	b = append(b, key...)
	b = binary.AppendUvarint(b, counter)
	if ttlMs > 0 {
		b = binary.AppendUvarint(b, ttlMs)
	}
	if !tomb {
		b = binary.AppendUvarint(b, uint64(len(value)))
		b = append(b, value...)
	}
	return b
}

// EncodeDelta returns the local peer's keys changed since the previous EncodeDelta
// (tombstones included), or nil if none changed. A TTL travels as the time left on the
// store's clock (the latest now seen), rounded up to a millisecond; a key whose TTL has run
// out before it was sent travels as a tombstone.
func (s *Store) EncodeDelta() []byte {
	if s.dirty == 0 {
		return nil
	}
	p := s.me
	size := 2 + uvarintLen(p.epoch) + uvarintLen(uint64(s.dirty))
	for i := range p.entries {
		if e := &p.entries[i]; e.dirty {
			ms, ok := s.wireTTL(e)
			size += entrySize(e.key, e.counter, ms, e.value, e.tomb || !ok)
		}
	}
	b := make([]byte, 0, size)
	b = append(b, formatVersion, kindDelta)
	b = binary.AppendUvarint(b, p.epoch)
	b = binary.AppendUvarint(b, uint64(s.dirty))
	for i := range p.entries {
		if e := &p.entries[i]; e.dirty {
			ms, ok := s.wireTTL(e)
			b = appendEntry(b, e.key, e.counter, ms, e.value, e.tomb || !ok)
			e.dirty = false
		}
	}
	s.dirty = 0
	if p.tombs > 0 {
		// Sent tombstones are no longer needed locally.
		p.entries = slices.DeleteFunc(p.entries, func(e entry) bool { return e.tomb })
		p.tombs = 0
	}
	return b
}

// EncodeSnapshot returns the whole live state of the given peers, or of every known peer
// (self included) if none is given. Unknown peers, and peers known only through Heard, are
// skipped. The result is never nil.
//
// Each record carries the peer's epoch and a counter C through which the record is
// complete: for self, the local counter; for a remote peer, the C of the last snapshot
// applied for it in its current epoch. Apply accepts only the author's own record
// (EncodeSnapshot(store.Self())); multi-peer snapshots are for ApplyTrusted.
func (s *Store) EncodeSnapshot(peers ...PeerID) []byte {
	list := s.snapBuf[:0]
	if len(peers) == 0 {
		for _, p := range s.peers {
			list = append(list, p)
		}
	} else {
		for _, id := range peers {
			if p := s.peers[string(id)]; p != nil {
				list = append(list, p)
			}
		}
	}
	list = slices.DeleteFunc(list, func(p *peerState) bool { return p.epoch == 0 })
	slices.SortFunc(list, func(a, b *peerState) int { return strings.Compare(string(a.id), string(b.id)) })
	list = slices.CompactFunc(list, func(a, b *peerState) bool { return a == b })

	size := 2 + uvarintLen(uint64(len(list)))
	for _, p := range list {
		size += uvarintLen(uint64(len(p.id))) + len(p.id) + uvarintLen(p.epoch) + uvarintLen(p.high) + uvarintLen(uint64(p.live))
		for i := range p.entries {
			if e := &p.entries[i]; !e.tomb {
				ms, _ := s.wireTTL(e)
				size += entrySize(e.key, e.counter, ms, e.value, false)
			}
		}
	}
	b := make([]byte, 0, size)
	b = append(b, formatVersion, kindSnapshot)
	b = binary.AppendUvarint(b, uint64(len(list)))
	for _, p := range list {
		b = binary.AppendUvarint(b, uint64(len(p.id)))
		b = append(b, p.id...)
		b = binary.AppendUvarint(b, p.epoch)
		c := p.complete
		if p == s.me {
			c = p.high
		}
		b = binary.AppendUvarint(b, c)
		n := 0
		for i := range p.entries {
			if e := &p.entries[i]; !e.tomb {
				if _, ok := s.wireTTL(e); ok {
					n++
				}
			}
		}
		b = binary.AppendUvarint(b, uint64(n))
		for i := range p.entries {
			e := &p.entries[i]
			if e.tomb {
				continue
			}
			if ms, ok := s.wireTTL(e); ok {
				b = appendEntry(b, e.key, e.counter, ms, e.value, false)
			}
		}
	}
	clear(list)
	s.snapBuf = list[:0]
	return b
}

// wireEntry is one decoded entry. It holds no pointers (key and value are offsets into
// the input), so decoding into a reused slice costs no write barriers.
type wireEntry struct {
	koff, klen int32 // key: data[koff : koff+klen]
	voff, vlen int32 // value: data[voff : voff+vlen]
	counter    uint64
	ttl        time.Duration // 0: none
	tomb       bool

	accept bool // plan: this entry wins
	found  bool // plan: the key is held (at entries[pos])
	pos    int  // plan: index in the held entries, or where the key would go
}

// wireRecord is one decoded peer record (a delta is one record with no peer ID).
type wireRecord struct {
	peer       []byte // snapshot: the peer ID (aliases the input); delta: nil
	epoch      uint64
	complete   uint64 // snapshot only
	first, end int    // entries: decoded.ents[first:end]

	p          *peerState // plan: the held peer (nil: new)
	skip       bool       // plan: nothing to do for this record
	reset      bool       // plan: newer epoch, replaces everything held
	structural bool       // plan: entries are inserted or removed
}

// decoded holds one decoded message; its slices are reused.
type decoded struct {
	data []byte
	kind byte
	recs []wireRecord
	ents []wireEntry
}

func (d *decoded) key(w *wireEntry) []byte   { return d.data[w.koff : w.koff+w.klen] }
func (d *decoded) value(w *wireEntry) []byte { return d.data[w.voff : w.voff+w.vlen] }

// maxMessage bounds a message so that offsets fit in an int32.
const maxMessage = math.MaxInt32

// decodeError is a decoder error: ErrMalformed or ErrTooLarge, optionally also wrapping
// the limit error it corresponds to.
type decodeError struct {
	kind, limit error
	msg         string
}

func (e *decodeError) Error() string { return e.kind.Error() + ": " + e.msg }

func (e *decodeError) Unwrap() []error {
	if e.limit != nil {
		return []error{e.kind, e.limit}
	}
	return []error{e.kind}
}

// loc says where in a message the decoder is, for error messages only.
type loc struct {
	snapshot bool
	rec      int // snapshot record index
	ent      int // entry index, -1 if not in an entry
}

func (l loc) String() string {
	s := "delta"
	if l.snapshot {
		s = fmt.Sprintf("snapshot record %d", l.rec)
	}
	if l.ent >= 0 {
		s += fmt.Sprintf(" entry %d", l.ent)
	}
	return s
}

func malformed(at loc, format string, args ...any) error {
	return &decodeError{kind: ErrMalformed, msg: at.String() + ": " + fmt.Sprintf(format, args...)}
}

func tooLarge(limit error, at loc, format string, args ...any) error {
	return &decodeError{kind: ErrTooLarge, limit: limit, msg: at.String() + ": " + fmt.Sprintf(format, args...)}
}

// reader walks the input.
type reader struct {
	b   []byte
	off int
}

func (r *reader) left() int { return len(r.b) - r.off }

// uvarint reads a shortest-form unsigned varint; the one-byte case is inlined.
func (r *reader) uvarint(at loc, field string) (uint64, error) {
	if r.off < len(r.b) {
		if c := r.b[r.off]; c < 0x80 {
			r.off++
			return uint64(c), nil
		}
	}
	return r.uvarintLong(at, field)
}

func (r *reader) uvarintLong(at loc, field string) (uint64, error) {
	var x uint64
	var shift uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if r.off >= len(r.b) {
			return 0, malformed(at, "%s: truncated", field)
		}
		c := r.b[r.off]
		r.off++
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, malformed(at, "%s: varint overflows 64 bits", field)
			}
			if c == 0 {
				return 0, malformed(at, "%s: varint not in shortest form", field)
			}
			return x | uint64(c)<<shift, nil
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, malformed(at, "%s: varint overflows 64 bits", field)
}

// bytes reads n bytes (n already checked against a limit).
func (r *reader) bytes(n uint64, at loc, field string) ([]byte, error) {
	if n > uint64(r.left()) {
		return nil, malformed(at, "%s: truncated (%d bytes announced, %d left)", field, n, r.left())
	}
	b := r.b[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return b, nil
}

// Minimum encoded sizes, to reject absurd counts before looking at them.
const (
	minEntrySize  = 2 // head, counter (a tombstone with an empty key)
	minRecordSize = 5 // peerLen, 1-byte peer, epoch, complete, count
)

// decode parses data into d (reusing d's buffers; d may be nil to only check). It checks
// the structure and the limits lim (with defaults filled in), not the store's state. If
// author is not empty, a snapshot record for any other peer is ErrForeignPeer.
func decode(data []byte, lim *Limits, d *decoded, author PeerID) error {
	if d != nil {
		d.data, d.recs, d.ents = data, d.recs[:0], d.ents[:0]
	}
	hdr := loc{ent: -1}
	if len(data) > maxMessage {
		return &decodeError{kind: ErrTooLarge, msg: fmt.Sprintf("message of %d bytes", len(data))}
	}
	if len(data) < 2 {
		return &decodeError{kind: ErrMalformed, msg: fmt.Sprintf("header: %d bytes, want at least 2", len(data))}
	}
	if data[0] != formatVersion {
		return &decodeError{kind: ErrMalformed, msg: fmt.Sprintf("header: unknown format version %d (want %d)", data[0], formatVersion)}
	}
	r := reader{b: data, off: 2}
	kind := data[1]
	if d != nil {
		d.kind = kind
	}
	switch kind {
	case kindDelta:
		epoch, err := r.uvarint(hdr, "epoch")
		if err != nil {
			return err
		}
		if epoch == 0 {
			return malformed(hdr, "epoch 0")
		}
		n, err := r.uvarint(hdr, "entry count")
		if err != nil {
			return err
		}
		if max := 2 * uint64(lim.MaxKeysPerPeer); n > max {
			return tooLarge(ErrTooManyKeys, hdr, "%d entries (limit %d)", n, max)
		}
		rec := wireRecord{epoch: epoch}
		if d != nil {
			rec.first = len(d.ents)
		}
		if err := decodeEntries(&r, lim, d, n, hdr); err != nil {
			return err
		}
		if d != nil {
			rec.end = len(d.ents)
			d.recs = append(d.recs, rec)
		}
	case kindSnapshot:
		hdr.snapshot = true
		n, err := r.uvarint(hdr, "record count")
		if err != nil {
			return err
		}
		if n > uint64(lim.MaxPeers) {
			return tooLarge(ErrTooManyPeers, loc{snapshot: true, rec: -1, ent: -1}, "%d records (limit %d)", n, lim.MaxPeers)
		}
		if n > uint64(r.left()/minRecordSize) {
			return malformed(hdr, "%d records cannot fit in %d bytes", n, r.left())
		}
		if d != nil {
			d.recs = slices.Grow(d.recs, int(n))
		}
		var prev []byte
		for i := range int(n) {
			at := loc{snapshot: true, rec: i, ent: -1}
			plen, err := r.uvarint(at, "peer ID length")
			if err != nil {
				return err
			}
			if plen == 0 {
				return malformed(at, "empty peer ID")
			}
			if plen > maxPeerIDLen {
				return tooLarge(nil, at, "peer ID of %d bytes (limit %d)", plen, maxPeerIDLen)
			}
			peer, err := r.bytes(plen, at, "peer ID")
			if err != nil {
				return err
			}
			if i > 0 && string(prev) >= string(peer) {
				return malformed(at, "peer IDs not in strictly increasing order")
			}
			if author != "" && string(peer) != string(author) {
				return fmt.Errorf("%w: snapshot record %d is for peer %x, author is %x", ErrForeignPeer, i, peer, string(author))
			}
			prev = peer
			rec := wireRecord{peer: peer}
			if rec.epoch, err = r.uvarint(at, "epoch"); err != nil {
				return err
			}
			if rec.epoch == 0 {
				return malformed(at, "epoch 0")
			}
			if rec.complete, err = r.uvarint(at, "complete counter"); err != nil {
				return err
			}
			cnt, err := r.uvarint(at, "entry count")
			if err != nil {
				return err
			}
			if cnt > uint64(lim.MaxKeysPerPeer) {
				return tooLarge(ErrTooManyKeys, at, "%d entries (limit %d)", cnt, lim.MaxKeysPerPeer)
			}
			if d != nil {
				rec.first = len(d.ents)
				if cap(d.ents)-len(d.ents) < int(cnt) {
					// Room for this record and, at the same size, the ones left.
					d.ents = slices.Grow(d.ents, int(cnt)*(int(n)-i))
				}
			}
			if err := decodeEntries(&r, lim, d, cnt, at); err != nil {
				return err
			}
			if d != nil {
				rec.end = len(d.ents)
				d.recs = append(d.recs, rec)
			}
		}
	default:
		return &decodeError{kind: ErrMalformed, msg: fmt.Sprintf("header: unknown kind %d", kind)}
	}
	if r.left() != 0 {
		return &decodeError{kind: ErrMalformed, msg: fmt.Sprintf("%d trailing bytes", r.left())}
	}
	return nil
}

// decodeEntries reads n entries of one delta or snapshot record (n already checked
// against a limit).
func decodeEntries(r *reader, lim *Limits, d *decoded, n uint64, at loc) error {
	if n > uint64(r.left()/minEntrySize) {
		return malformed(at, "%d entries cannot fit in %d bytes", n, r.left())
	}
	var prev []byte
	live := 0
	for i := range int(n) {
		at.ent = i
		head, err := r.uvarint(at, "head")
		if err != nil {
			return err
		}
		flags, klen := head&3, head>>2
		if klen > uint64(lim.MaxKeyLen) {
			return tooLarge(ErrKeyTooLong, at, "key of %d bytes (limit %d)", klen, lim.MaxKeyLen)
		}
		koff := r.off
		key, err := r.bytes(klen, at, "key")
		if err != nil {
			return err
		}
		if !ascii(key) && !utf8.Valid(key) {
			return malformed(at, "key is not valid UTF-8")
		}
		if i > 0 && string(prev) >= string(key) {
			return malformed(at, "keys not in strictly increasing order")
		}
		prev = key
		w := wireEntry{koff: int32(koff), klen: int32(klen), tomb: flags&flagTomb != 0}
		if w.tomb && (at.snapshot || flags&flagTTL != 0) {
			return malformed(at, "invalid flags %d", flags)
		}
		if w.counter, err = r.uvarint(at, "counter"); err != nil {
			return err
		}
		if w.counter == 0 {
			return malformed(at, "counter 0")
		}
		if flags&flagTTL != 0 {
			ms, err := r.uvarint(at, "ttl")
			if err != nil {
				return err
			}
			if ms == 0 || ms > uint64(maxTTLMillis) {
				return malformed(at, "ttl of %d ms out of range", ms)
			}
			w.ttl = time.Duration(ms) * time.Millisecond
		}
		if !w.tomb {
			vlen, err := r.uvarint(at, "value length")
			if err != nil {
				return err
			}
			if vlen > uint64(lim.MaxValueSize) {
				return tooLarge(ErrValueTooLarge, at, "value of %d bytes (limit %d)", vlen, lim.MaxValueSize)
			}
			w.voff, w.vlen = int32(r.off), int32(vlen)
			if _, err = r.bytes(vlen, at, "value"); err != nil {
				return err
			}
			if live++; live > lim.MaxKeysPerPeer {
				return tooLarge(ErrTooManyKeys, at, "more than %d live entries", lim.MaxKeysPerPeer)
			}
		}
		if d != nil {
			d.ents = append(d.ents, w)
		}
	}
	return nil
}

// ascii reports whether b is all ASCII (and so valid UTF-8): the common case of a key,
// checked without a call.
func ascii(b []byte) bool {
	var or byte
	for _, c := range b {
		or |= c
	}
	return or < utf8.RuneSelf
}

// Verify decodes data (a delta or a snapshot) without applying it, checks it against lim
// (zero fields take the defaults) and checks that every peer it describes is author: a
// snapshot may hold only author's own record (a delta names no peer; its author is the
// signer). Validators at network relays call it. It never panics and does not allocate on
// success. Errors: ErrMalformed, ErrTooLarge (also wrapping the limit error where one
// applies), ErrForeignPeer.
func Verify(data []byte, author PeerID, lim Limits) error {
	lim, err := lim.WithDefaults()
	if err != nil {
		return err
	}
	if err := checkPeerID(author); err != nil {
		return fmt.Errorf("ephemeral: Verify: author: %w", err)
	}
	return decode(data, &lim, nil, author)
}

// MaxSnapshotSize is the largest encoded snapshot of one peer's own state (EncodeSnapshot
// of self, as hellos and heartbeats carry it) that a store with these limits can produce
// for an author ID of authorLen bytes: MaxKeysPerPeer live keys of MaxKeyLen bytes with
// values of MaxValueSize bytes, each with the largest counter and TTL. A network layer
// that bounds message size uses it to refuse, up front, limits whose full state it could
// not carry.
func MaxSnapshotSize(authorLen int, lim Limits) (int, error) {
	lim, err := lim.WithDefaults()
	if err != nil {
		return 0, err
	}
	const maxVarint = 10 // a uint64 counter or epoch
	n := 2 + uvarintLen(1) + uvarintLen(uint64(authorLen)) + authorLen + 2*maxVarint + uvarintLen(uint64(lim.MaxKeysPerPeer))
	entry := uvarintLen(uint64(lim.MaxKeyLen)<<2) + lim.MaxKeyLen + maxVarint + uvarintLen(uint64(maxTTLMillis)) +
		uvarintLen(uint64(lim.MaxValueSize)) + lim.MaxValueSize
	return n + lim.MaxKeysPerPeer*entry, nil
}
