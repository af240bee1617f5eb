package storage

import (
	"bytes"
	"fmt"
)

// Keys are stored as bytes that keep their order and prefixes: each part
// is written with 0x00 escaped as 0x00 0xFF and ends with 0x00 0x01. So the
// encoding of a prefix key is a byte prefix of the encoding of every key it
// prefixes, and no part boundary can be forged by a part's content.

const (
	esc     = 0x00
	escNul  = 0xFF
	escEnd  = 0x01
	maxPart = 1 << 16
)

// EncodeKey returns the byte form of k used by byte-keyed stores (Bolt).
func EncodeKey(k Key) []byte {
	n := 0
	for _, p := range k {
		n += len(p) + 2
	}
	out := make([]byte, 0, n)
	return appendKey(out, k)
}

func appendKey(out []byte, k Key) []byte {
	for _, p := range k {
		for i := 0; i < len(p); i++ {
			if p[i] == esc {
				out = append(out, esc, escNul)
			} else {
				out = append(out, p[i])
			}
		}
		out = append(out, esc, escEnd)
	}
	return out
}

// DecodeKey parses the byte form of a key. It returns ErrBadKey for input
// that EncodeKey cannot produce (an empty key, a dangling or unknown
// escape, a part longer than 64 KiB); it never panics.
func DecodeKey(b []byte) (Key, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadKey)
	}
	var (
		k    Key
		part []byte
	)
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != esc {
			part = append(part, c)
			if len(part) > maxPart {
				return nil, fmt.Errorf("%w: part over %d bytes", ErrBadKey, maxPart)
			}
			continue
		}
		if i+1 >= len(b) {
			return nil, fmt.Errorf("%w: dangling escape at %d", ErrBadKey, i)
		}
		i++
		switch b[i] {
		case escNul:
			part = append(part, esc)
		case escEnd:
			k = append(k, string(part))
			part = part[:0]
		default:
			return nil, fmt.Errorf("%w: unknown escape 0x%02x at %d", ErrBadKey, b[i], i)
		}
	}
	if len(part) > 0 {
		return nil, fmt.Errorf("%w: unterminated part", ErrBadKey)
	}
	return k, nil
}

// hasKeyPrefix reports whether encoded key b starts with encoded prefix p.
func hasKeyPrefix(b, p []byte) bool { return bytes.HasPrefix(b, p) }
