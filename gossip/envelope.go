package gossip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/convene-p2p/convene/room/roomnet"
)

// Wire bounds of the envelope (docs/PROTOCOL.md, "Envelope"). They are part of
// protocol version 1: every peer enforces the same values, so an honest peer
// never produces a message another honest peer rejects.
const (
	// MaxNameLen bounds Message.Name, in bytes (valid UTF-8).
	MaxNameLen = 256
	// MaxMetaEntries bounds the number of entries in Message.Meta.
	MaxMetaEntries = 32
	// MaxMetaKeyLen bounds one Meta key, in bytes (1..MaxMetaKeyLen, valid UTF-8).
	MaxMetaKeyLen = 64
	// MaxMetaValueLen bounds one Meta value, in bytes (valid UTF-8).
	MaxMetaValueLen = 1024
	// MaxSubjectLen bounds a suspect's Subject (a peer ID), in bytes.
	MaxSubjectLen = 128
)

// Header bits of the envelope's first byte.
const (
	hdrKindMask  = 0x07
	hdrName      = 0x08
	hdrMeta      = 0x10
	hdrState     = 0x20
	hdrPayload   = 0x40
	hdrReserved  = 0x80
	maxKnownKind = roomnet.KindSuspect
	// refuteMark is a refutation heartbeat's whole payload.
	refuteMark = 0x01
)

var (
	// ErrMalformed is returned for input that does not decode: truncated,
	// trailing bytes, an unknown kind, reserved bits set, invalid UTF-8,
	// non-canonical encodings, or an ephemeral state that does not decode.
	ErrMalformed = errors.New("gossip: malformed message")
	// ErrTooLarge is returned for input beyond a size limit: the envelope
	// bounds above, Config.MaxMessageSize, or the presence Limits.
	ErrTooLarge = errors.New("gossip: message too large")
	// ErrWrongAuthor is returned when a message's presence state describes a
	// peer other than its authenticated author.
	ErrWrongAuthor = errors.New("gossip: state not authored by sender")
)

// EncodeMessage encodes m in the version 1 envelope. It fails with
// ErrMalformed or ErrTooLarge for a message that DecodeMessage would reject,
// so that everything it returns decodes back to m (nil and empty Meta, State
// and Payload are equivalent). It does not check Config.MaxMessageSize.
func EncodeMessage(m roomnet.Message) ([]byte, error) {
	if m.Kind == 0 || m.Kind > maxKnownKind {
		return nil, fmt.Errorf("%w: unknown kind %d", ErrMalformed, m.Kind)
	}
	if err := checkName(m.Name); err != nil {
		return nil, err
	}
	if m.Kind == roomnet.KindSuspect {
		// The subject travels in the payload section: uvarint subject
		// epoch, then the subject's peer ID bytes.
		switch {
		case len(m.Payload) > 0 || len(m.State) > 0:
			return nil, fmt.Errorf("%w: suspect with payload or state", ErrMalformed)
		case m.Subject == "":
			return nil, fmt.Errorf("%w: suspect without subject", ErrMalformed)
		case len(m.Subject) > MaxSubjectLen:
			return nil, fmt.Errorf("%w: subject is %d bytes, limit %d", ErrTooLarge, len(m.Subject), MaxSubjectLen)
		}
		m.Payload = append(appendUvarint(nil, m.SubjectEpoch), m.Subject...)
	} else if m.Subject != "" || m.SubjectEpoch != 0 {
		return nil, fmt.Errorf("%w: subject on a %v", ErrMalformed, m.Kind)
	}
	if m.Kind == roomnet.KindHello {
		// The view digest travels in the payload section: 8 bytes,
		// little-endian, present iff non-zero.
		if len(m.Payload) > 0 {
			return nil, fmt.Errorf("%w: hello with payload", ErrMalformed)
		}
		if m.View != 0 {
			m.Payload = binary.LittleEndian.AppendUint64(nil, m.View)
		}
	} else if m.View != 0 {
		return nil, fmt.Errorf("%w: view digest on a %v", ErrMalformed, m.Kind)
	}
	if m.Kind == roomnet.KindHeartbeat {
		// A refutation travels in the payload section: exactly the byte
		// 0x01; a heartbeat has no other payload.
		if len(m.Payload) > 0 {
			return nil, fmt.Errorf("%w: heartbeat with payload", ErrMalformed)
		}
		if m.Refute {
			m.Payload = []byte{refuteMark}
		}
	} else if m.Refute {
		return nil, fmt.Errorf("%w: refutation mark on a %v", ErrMalformed, m.Kind)
	}
	keys, err := sortedMetaKeys(m.Meta)
	if err != nil {
		return nil, err
	}
	hdr := byte(m.Kind)
	size := 1 + uvarintLen(m.Epoch)
	if m.Name != "" {
		hdr |= hdrName
		size += uvarintLen(uint64(len(m.Name))) + len(m.Name)
	}
	if len(keys) > 0 {
		hdr |= hdrMeta
		size += uvarintLen(uint64(len(keys)))
		for _, k := range keys {
			v := m.Meta[k]
			size += uvarintLen(uint64(len(k))) + len(k) + uvarintLen(uint64(len(v))) + len(v)
		}
	}
	if len(m.State) > 0 {
		hdr |= hdrState
		size += len(m.State)
		if len(m.Payload) > 0 {
			size += uvarintLen(uint64(len(m.State)))
		}
	}
	if len(m.Payload) > 0 {
		hdr |= hdrPayload
		size += len(m.Payload)
	}

	b := make([]byte, 0, size)
	b = append(b, hdr)
	b = appendUvarint(b, m.Epoch)
	if m.Name != "" {
		b = appendUvarint(b, uint64(len(m.Name)))
		b = append(b, m.Name...)
	}
	if len(keys) > 0 {
		b = appendUvarint(b, uint64(len(keys)))
		for _, k := range keys {
			v := m.Meta[k]
			b = appendUvarint(b, uint64(len(k)))
			b = append(b, k...)
			b = appendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	if len(m.State) > 0 {
		if len(m.Payload) > 0 {
			b = appendUvarint(b, uint64(len(m.State)))
		}
		b = append(b, m.State...)
	}
	if len(m.Payload) > 0 {
		b = append(b, m.Payload...)
	}
	return b, nil
}

// DecodeMessage decodes a version 1 envelope. It never panics; it returns an
// error wrapping ErrMalformed or ErrTooLarge for bad input, and allocates no
// more than about 2×len(data). The result does not alias data.
// It checks the envelope only: the presence state inside is checked by the
// validator (ephemeral.Verify), not here.
func DecodeMessage(data []byte) (roomnet.Message, error) {
	var m roomnet.Message
	d := decoder{b: data}
	hdr, ok := d.byte()
	if !ok {
		return m, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if hdr&hdrReserved != 0 {
		return m, fmt.Errorf("%w: reserved header bit set", ErrMalformed)
	}
	m.Kind = roomnet.MessageKind(hdr & hdrKindMask)
	if m.Kind == 0 || m.Kind > maxKnownKind {
		return m, fmt.Errorf("%w: unknown kind %d", ErrMalformed, m.Kind)
	}
	if m.Epoch, ok = d.uvarint(); !ok {
		return roomnet.Message{}, fmt.Errorf("%w: bad epoch", ErrMalformed)
	}
	if hdr&hdrName != 0 {
		n, err := d.length(1, MaxNameLen, "name")
		if err != nil {
			return roomnet.Message{}, err
		}
		name := d.take(n)
		if !utf8.Valid(name) {
			return roomnet.Message{}, fmt.Errorf("%w: name is not UTF-8", ErrMalformed)
		}
		m.Name = string(name)
	}
	if hdr&hdrMeta != 0 {
		meta, err := d.meta()
		if err != nil {
			return roomnet.Message{}, err
		}
		m.Meta = meta
	}
	if hdr&hdrState != 0 {
		if hdr&hdrPayload != 0 {
			n, err := d.length(1, math.MaxInt, "state")
			if err != nil {
				return roomnet.Message{}, err
			}
			m.State = bytes.Clone(d.take(n))
		} else {
			m.State = bytes.Clone(d.rest())
			if len(m.State) == 0 {
				return roomnet.Message{}, fmt.Errorf("%w: empty state", ErrMalformed)
			}
		}
	}
	if hdr&hdrPayload != 0 {
		m.Payload = bytes.Clone(d.rest())
		if len(m.Payload) == 0 {
			return roomnet.Message{}, fmt.Errorf("%w: empty payload", ErrMalformed)
		}
	}
	if len(d.b) != 0 {
		return roomnet.Message{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	if m.Kind == roomnet.KindSuspect {
		if len(m.State) > 0 {
			return roomnet.Message{}, fmt.Errorf("%w: suspect with state", ErrMalformed)
		}
		p := decoder{b: m.Payload}
		if m.SubjectEpoch, ok = p.uvarint(); !ok {
			return roomnet.Message{}, fmt.Errorf("%w: bad subject epoch", ErrMalformed)
		}
		switch {
		case len(p.b) == 0:
			return roomnet.Message{}, fmt.Errorf("%w: suspect without subject", ErrMalformed)
		case len(p.b) > MaxSubjectLen:
			return roomnet.Message{}, fmt.Errorf("%w: subject is %d bytes, limit %d", ErrTooLarge, len(p.b), MaxSubjectLen)
		}
		m.Subject, m.Payload = roomnet.PeerID(p.b), nil
	}
	if m.Kind == roomnet.KindHeartbeat && m.Payload != nil {
		if len(m.Payload) != 1 || m.Payload[0] != refuteMark {
			return roomnet.Message{}, fmt.Errorf("%w: heartbeat payload is not a refutation mark", ErrMalformed)
		}
		m.Refute, m.Payload = true, nil
	}
	if m.Kind == roomnet.KindHello && m.Payload != nil {
		if len(m.Payload) != 8 {
			return roomnet.Message{}, fmt.Errorf("%w: hello view digest of %d bytes", ErrMalformed, len(m.Payload))
		}
		if m.View = binary.LittleEndian.Uint64(m.Payload); m.View == 0 {
			return roomnet.Message{}, fmt.Errorf("%w: zero view digest", ErrMalformed)
		}
		m.Payload = nil
	}
	return m, nil
}

func checkName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: name is %d bytes, limit %d", ErrTooLarge, len(name), MaxNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: name is not UTF-8", ErrMalformed)
	}
	return nil
}

// sortedMetaKeys checks meta against the envelope bounds and returns its keys
// in ascending byte order (the canonical wire order).
func sortedMetaKeys(meta map[string]string) ([]string, error) {
	if len(meta) == 0 {
		return nil, nil
	}
	if len(meta) > MaxMetaEntries {
		return nil, fmt.Errorf("%w: %d meta entries, limit %d", ErrTooLarge, len(meta), MaxMetaEntries)
	}
	keys := make([]string, 0, len(meta))
	for k, v := range meta {
		switch {
		case k == "":
			return nil, fmt.Errorf("%w: empty meta key", ErrMalformed)
		case len(k) > MaxMetaKeyLen:
			return nil, fmt.Errorf("%w: meta key is %d bytes, limit %d", ErrTooLarge, len(k), MaxMetaKeyLen)
		case len(v) > MaxMetaValueLen:
			return nil, fmt.Errorf("%w: meta value of %q is %d bytes, limit %d", ErrTooLarge, k, len(v), MaxMetaValueLen)
		case !utf8.ValidString(k) || !utf8.ValidString(v):
			return nil, fmt.Errorf("%w: meta entry is not UTF-8", ErrMalformed)
		}
		keys = append(keys, k)
	}
	sortStrings(keys)
	return keys, nil
}

// sortStrings is an insertion sort: at most MaxMetaEntries elements.
func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// decoder reads from b, consuming it. Every method checks bounds.
type decoder struct{ b []byte }

func (d *decoder) byte() (byte, bool) {
	if len(d.b) == 0 {
		return 0, false
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c, true
}

// uvarint reads a minimally encoded unsigned LEB128 integer of at most 64 bits.
func (d *decoder) uvarint() (uint64, bool) {
	v, n := readUvarint(d.b)
	if n <= 0 {
		return 0, false
	}
	d.b = d.b[n:]
	return v, true
}

// length reads a uvarint length in [lo, hi] that also fits the remaining input.
func (d *decoder) length(lo, hi int, what string) (int, error) {
	v, ok := d.uvarint()
	if !ok {
		return 0, fmt.Errorf("%w: bad %s length", ErrMalformed, what)
	}
	if v > uint64(hi) {
		return 0, fmt.Errorf("%w: %s length %d, limit %d", ErrTooLarge, what, v, hi)
	}
	if v < uint64(lo) {
		return 0, fmt.Errorf("%w: %s length %d below %d", ErrMalformed, what, v, lo)
	}
	if v > uint64(len(d.b)) {
		return 0, fmt.Errorf("%w: %s truncated", ErrMalformed, what)
	}
	return int(v), nil
}

func (d *decoder) take(n int) []byte {
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) rest() []byte {
	s := d.b
	d.b = nil
	return s
}

func (d *decoder) meta() (map[string]string, error) {
	n, ok := d.uvarint()
	if !ok {
		return nil, fmt.Errorf("%w: bad meta count", ErrMalformed)
	}
	if n > MaxMetaEntries {
		return nil, fmt.Errorf("%w: %d meta entries, limit %d", ErrTooLarge, n, MaxMetaEntries)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: empty meta", ErrMalformed)
	}
	// Each entry takes at least 3 bytes (key length, 1-byte key, value length).
	if n > uint64(len(d.b)/3) {
		return nil, fmt.Errorf("%w: meta truncated", ErrMalformed)
	}
	meta := make(map[string]string, n)
	prev := ""
	for i := uint64(0); i < n; i++ {
		kl, err := d.length(1, MaxMetaKeyLen, "meta key")
		if err != nil {
			return nil, err
		}
		k := d.take(kl)
		vl, err := d.length(0, MaxMetaValueLen, "meta value")
		if err != nil {
			return nil, err
		}
		v := d.take(vl)
		if !utf8.Valid(k) || !utf8.Valid(v) {
			return nil, fmt.Errorf("%w: meta entry is not UTF-8", ErrMalformed)
		}
		key := string(k)
		if i > 0 && key <= prev {
			return nil, fmt.Errorf("%w: meta keys not strictly ascending", ErrMalformed)
		}
		prev = key
		meta[key] = string(v)
	}
	return meta, nil
}

// readUvarint decodes a minimally encoded uvarint from b. It returns n <= 0 on
// truncated, overlong (more than 10 bytes or overflowing 64 bits) or
// non-minimal input (a final 0x00 byte after the first).
func readUvarint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		if i == 9 && c > 1 {
			return 0, -1 // overflow
		}
		v |= uint64(c&0x7f) << (7 * uint(i))
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, -1 // non-minimal
			}
			return v, i + 1
		}
	}
	return 0, 0
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
