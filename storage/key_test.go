package storage

import (
	"bytes"
	"slices"
	"testing"
)

func TestKeyCodecRoundTripAndPrefix(t *testing.T) {
	keys := []Key{{"a"}, {""}, {"", ""}, {"\x00"}, {"\x00\x01", "\xff\x00"}, {"doc", "snapshot", "abc"}}
	for _, k := range keys {
		got, err := DecodeKey(EncodeKey(k))
		if err != nil || !slices.Equal(got, k) {
			t.Errorf("round trip %q: %q %v", k, got, err)
		}
	}
	// A key's encoding is a prefix of its extensions', and of nothing else's.
	if !bytes.HasPrefix(EncodeKey(Key{"d", "x"}), EncodeKey(Key{"d"})) {
		t.Error("prefix not kept")
	}
	if bytes.HasPrefix(EncodeKey(Key{"dx"}), EncodeKey(Key{"d"})) {
		t.Error("part {d} matches part {dx}")
	}
	if bytes.HasPrefix(EncodeKey(Key{"d\x00\x01x"}), EncodeKey(Key{"d"})) {
		t.Error("a part's content forged a part boundary")
	}
	for _, bad := range [][]byte{nil, {0}, {'a'}, {0, 2}, {'a', 0, 1, 'b'}} {
		if _, err := DecodeKey(bad); err == nil {
			t.Errorf("DecodeKey(%q) accepted", bad)
		}
	}
}

// FuzzDecodeKey: any input decodes or errors, never panics; what decodes
// re-encodes to the same bytes.
func FuzzDecodeKey(f *testing.F) {
	f.Add(EncodeKey(Key{"doc", "snapshot", "h"}))
	f.Add(EncodeKey(Key{"\x00", ""}))
	f.Add([]byte{0})
	f.Add([]byte{0, 0xff, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := DecodeKey(b)
		if err != nil {
			return
		}
		if !bytes.Equal(EncodeKey(k), b) {
			t.Fatalf("DecodeKey(%q) = %q re-encodes to %q", b, k, EncodeKey(k))
		}
	})
}
