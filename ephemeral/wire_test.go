package ephemeral

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// epochMs is a realistic epoch: unix milliseconds at start (2026-01-01).
var epochMs = uint64(t0.UnixMilli())

const cursorJSON = `{"x":100,"y":200}`

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGoldenEncodings pins the bytes documented in docs/PROTOCOL.md (Part 3).
func TestGoldenEncodings(t *testing.T) {
	a := newStore(t, "A", epochMs)
	mustSet(t, a, t0, "cursor", cursorJSON)
	d := a.EncodeDelta()
	want := unhex(t, "01 01 80d0eab6b733 01 18 637572736f72 01 11 7b2278223a3130302c2279223a3230307d")
	if !bytes.Equal(d, want) {
		t.Fatalf("cursor delta\n got % x\nwant % x", d, want)
	}

	if _, err := a.SetTTL(t0, "typing", []byte("1"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	mustDelete(t, a, t0, "cursor")
	d = a.EncodeDelta()
	want = unhex(t, "01 01 80d0eab6b733 02 19 637572736f72 03 1a 747970696e67 02 904e 01 31")
	if !bytes.Equal(d, want) {
		t.Fatalf("tombstone+ttl delta\n got % x\nwant % x", d, want)
	}

	mustSet(t, a, t0, "name", "Ann")
	s := a.EncodeSnapshot()
	want = unhex(t, "01 02 01 01 41 80d0eab6b733 04 02 10 6e616d65 04 03 416e6e 1a 747970696e67 02 904e 01 31")
	if !bytes.Equal(s, want) {
		t.Fatalf("snapshot\n got % x\nwant % x", s, want)
	}
}

func TestCursorUpdateIsSmall(t *testing.T) {
	const loro = 62 // Loro EphemeralStore, same update (docs/BENCHMARKS.md)
	a := newStore(t, alice, epochMs)
	for i := range 20_000 {
		mustSet(t, a, t0, "cursor", cursorJSON)
		d := a.EncodeDelta()
		limit := 35 // counter < 128
		if i >= 127 {
			limit = 36 // counter < 16384
		}
		if i >= 16383 {
			limit = 37
		}
		if len(d) > limit || float64(len(d)) > 0.7*loro {
			t.Fatalf("update %d: %d bytes, want <= %d (and <= 0.7 x %d)", i+1, len(d), limit, loro)
		}
	}
}

func TestEncodeDeltaCarriesOnlyChangesSinceLastEncode(t *testing.T) {
	a := newStore(t, alice, 1)
	keys := func(d []byte) []string {
		t.Helper()
		if d == nil {
			return nil
		}
		var dec decoded
		if err := decode(d, &a.lim, &dec, ""); err != nil {
			t.Fatal(err)
		}
		var out []string
		for i := range dec.ents {
			w := &dec.ents[i]
			k := string(dec.key(w))
			if w.tomb {
				k = "-" + k
			}
			if w.ttl > 0 {
				k += "~" + w.ttl.String()
			}
			out = append(out, k)
		}
		return out
	}
	steps := []struct {
		name string
		do   func()
		want []string
	}{
		{"nothing yet", func() {}, nil},
		{"two sets", func() { mustSet(t, a, at(0), "b", "1"); mustSet(t, a, at(0), "a", "1") }, []string{"a", "b"}},
		{"nothing since", func() {}, nil},
		{"one key twice", func() { mustSet(t, a, at(0), "b", "2"); mustSet(t, a, at(0), "b", "3") }, []string{"b"}},
		{"delete", func() { mustDelete(t, a, at(0), "a") }, []string{"-a"}},
		{"no-op delete", func() { mustDelete(t, a, at(0), "a") }, nil},
		{"ttl", func() { _, _ = a.SetTTL(at(0), "t", nil, 1500*time.Millisecond) }, []string{"t~1.5s"}},
		{"set then delete before encoding", func() { mustSet(t, a, at(0), "x", "1"); mustDelete(t, a, at(0), "x") }, []string{"-x"}},
		{"snapshots do not consume changes", func() { mustSet(t, a, at(0), "y", "1"); _ = a.EncodeSnapshot() }, []string{"y"}},
	}
	for _, st := range steps {
		st.do()
		got := keys(a.EncodeDelta())
		if strings.Join(got, ",") != strings.Join(st.want, ",") || (got == nil) != (st.want == nil) {
			t.Fatalf("%s: delta keys %q, want %q", st.name, got, st.want)
		}
	}
	if a.me.tombs != 0 {
		t.Fatalf("%d tombstones kept after they were sent", a.me.tombs)
	}
}

func TestSnapshotRoundTripsThroughTrustedApply(t *testing.T) {
	hub := newStore(t, "hub", 1)
	for i, p := range []PeerID{alice, carol, "dave"} {
		s := newStore(t, p, uint64(10+i))
		mustSet(t, s, at(0), "name", string(p))
		mustSet(t, s, at(0), "empty", "")
		if _, err := s.SetTTL(at(0), "typing", []byte("1"), time.Minute); err != nil {
			t.Fatal(err)
		}
		mustDelete(t, s, at(0), "empty")
		mustApply(t, hub, at(0), p, s.EncodeSnapshot())
	}
	_ = hub.Heard(at(0), "quiet") // known only through Heard: not in snapshots
	snap := hub.EncodeSnapshot()
	b := newStore(t, bob, 1)
	if _, err := b.ApplyTrusted(at(0), snap); err != nil {
		t.Fatal(err)
	}
	peers := []PeerID{alice, carol, "dave"}
	if got, want := b.EncodeSnapshot(peers...), hub.EncodeSnapshot(peers...); !bytes.Equal(got, want) {
		t.Fatalf("re-encoded snapshot differs\n got % x\nwant % x", got, want)
	}
	if b.State("quiet") != nil {
		t.Fatal("a Heard-only peer travelled in a snapshot")
	}
	if got := hub.EncodeSnapshot(carol, "nobody", carol); !bytes.Equal(got, hub.EncodeSnapshot(carol)) {
		t.Fatal("EncodeSnapshot did not skip unknown and duplicate peers")
	}
}

// entry builds one raw entry: head, key, counter, then the rest as given.
func rawEntry(head uint64, key string, counter uint64, rest ...byte) []byte {
	b := binary.AppendUvarint(nil, head)
	b = append(b, key...)
	b = binary.AppendUvarint(b, counter)
	return append(b, rest...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestDecodersRejectBadInput(t *testing.T) {
	manyLive := make([]tEntry, 33)
	for i := range manyLive {
		manyLive[i] = tEntry{key: string(rune('A' + i)), counter: uint64(i + 1)}
	}
	valid := tDelta(1, tEntry{key: "k", counter: 1, value: "v"})
	tests := []struct {
		name   string
		data   []byte
		author PeerID
		want   []error
	}{
		{"empty", nil, alice, []error{ErrMalformed}},
		{"one byte", []byte{1}, alice, []error{ErrMalformed}},
		{"unknown version", []byte{2, 1, 1, 0}, alice, []error{ErrMalformed}},
		{"unknown kind", []byte{1, 3, 0}, alice, []error{ErrMalformed}},
		{"delta truncated epoch", []byte{1, 1, 0x80}, alice, []error{ErrMalformed}},
		{"delta epoch zero", []byte{1, 1, 0, 0}, alice, []error{ErrMalformed}},
		{"delta missing count", []byte{1, 1, 1}, alice, []error{ErrMalformed}},
		{"delta count over limit", []byte{1, 1, 1, 65}, alice, []error{ErrTooLarge, ErrTooManyKeys}},
		{"delta count beyond the bytes", []byte{1, 1, 1, 3, 4, 1}, alice, []error{ErrMalformed}},
		{"varint not in shortest form", []byte{1, 1, 0x81, 0x00, 0}, alice, []error{ErrMalformed}},
		{"varint overflows 64 bits", cat([]byte{1, 1}, bytes.Repeat([]byte{0xff}, 9), []byte{0x02, 0}), alice, []error{ErrMalformed}},
		{"varint longer than 10 bytes", cat([]byte{1, 1}, bytes.Repeat([]byte{0x80}, 11)), alice, []error{ErrMalformed}},
		{"truncated key", cat([]byte{1, 1, 1, 1}, []byte{5 << 2, 'a', 'b'}), alice, []error{ErrMalformed}},
		{"key not UTF-8", cat([]byte{1, 1, 1, 1}, rawEntry(1<<2, "\xff", 1, 0)), alice, []error{ErrMalformed}},
		{"keys out of order", tDelta(1, tEntry{key: "b", counter: 1}, tEntry{key: "a", counter: 2}), alice, []error{ErrMalformed}},
		{"duplicate keys", tDelta(1, tEntry{key: "a", counter: 1}, tEntry{key: "a", counter: 2}), alice, []error{ErrMalformed}},
		{"counter zero", tDelta(1, tEntry{key: "k", counter: 0}), alice, []error{ErrMalformed}},
		{"tombstone with ttl", cat([]byte{1, 1, 1, 1}, rawEntry(1<<2|3, "k", 1, 5)), alice, []error{ErrMalformed}},
		{"ttl zero", cat([]byte{1, 1, 1, 1}, rawEntry(1<<2|flagTTL, "k", 1, 0, 0)), alice, []error{ErrMalformed}},
		{"ttl beyond a Duration", tDelta(1, tEntry{key: "k", counter: 1, ttlMs: uint64(maxTTLMillis) + 1}), alice, []error{ErrMalformed}},
		{"truncated value", cat([]byte{1, 1, 1, 1}, rawEntry(1<<2, "k", 1, 5, 'a', 'b')), alice, []error{ErrMalformed}},
		{"key too long", tDelta(1, tEntry{key: strings.Repeat("k", 65), counter: 1}), alice, []error{ErrTooLarge, ErrKeyTooLong}},
		{"value too large", tDelta(1, tEntry{key: "k", counter: 1, value: strings.Repeat("v", 1025)}), alice, []error{ErrTooLarge, ErrValueTooLarge}},
		{"delta with too many live keys", tDelta(1, manyLive...), alice, []error{ErrTooLarge, ErrTooManyKeys}},
		{"trailing bytes", cat(valid, []byte{0}), alice, []error{ErrMalformed}},
		{"snapshot record count over limit", cat([]byte{1, 2}, binary.AppendUvarint(nil, 1025)), alice, []error{ErrTooLarge, ErrTooManyPeers}},
		{"snapshot records beyond the bytes", []byte{1, 2, 5, 1, 'a', 1, 0, 0}, "a", []error{ErrMalformed}},
		{"snapshot empty peer ID", []byte{1, 2, 1, 0, 1, 0, 0, 0}, alice, []error{ErrMalformed}},
		{"snapshot peer ID too long", cat([]byte{1, 2, 1}, binary.AppendUvarint(nil, 129), bytes.Repeat([]byte{'p'}, 129), []byte{1, 0, 0}), alice, []error{ErrTooLarge}},
		{"snapshot peers out of order", tSnap(tRec{peer: "bob", epoch: 1}, tRec{peer: "alice", epoch: 1}), bob, []error{ErrMalformed}},
		{"snapshot duplicate peer", tSnap(tRec{peer: "alice", epoch: 1}, tRec{peer: "alice", epoch: 1}), alice, []error{ErrMalformed}},
		{"snapshot epoch zero", tSnap(tRec{peer: "alice", epoch: 0}), alice, []error{ErrMalformed}},
		{"snapshot tombstone", tSnap(tRec{peer: "alice", epoch: 1, complete: 1, es: []tEntry{{key: "k", counter: 1, tomb: true}}}), alice, []error{ErrMalformed}},
		{"snapshot entries over limit", tSnap(tRec{peer: "alice", epoch: 1, complete: 40, es: manyLive}), alice, []error{ErrTooLarge, ErrTooManyKeys}},
		{"snapshot truncated record", tSnap(tRec{peer: "alice", epoch: 1, complete: 1, es: []tEntry{{key: "k", counter: 1, value: "v"}}})[:12], alice, []error{ErrMalformed}},
		{"snapshot foreign record", tSnap(tRec{peer: "carol", epoch: 1}), alice, []error{ErrForeignPeer}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.data, tt.author, Limits{})
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Fatalf("Verify = %v, want %v", err, w)
				}
			}
			s := newStore(t, bob+"-receiver", 1)
			_ = s.Heard(at(0), tt.author)
			before := s.EncodeSnapshot()
			cs, err := s.Apply(at(1), tt.author, tt.data)
			for _, w := range tt.want {
				if !errors.Is(err, w) || cs != nil {
					t.Fatalf("Apply = %v, %v; want %v", cs, err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "ephemeral: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			if !bytes.Equal(before, s.EncodeSnapshot()) {
				t.Fatal("a rejected Apply changed the store")
			}
		})
	}
}

func TestVerifyAcceptsStoreOutput(t *testing.T) {
	a := newStore(t, alice, epochMs)
	mustSet(t, a, at(0), "cursor", cursorJSON)
	if _, err := a.SetTTL(at(0), "typing", nil, time.Second); err != nil {
		t.Fatal(err)
	}
	d := a.EncodeDelta()
	mustDelete(t, a, at(0), "typing")
	for _, m := range [][]byte{d, a.EncodeDelta(), a.EncodeSnapshot(), tDelta(1)} {
		if err := Verify(m, alice, Limits{}); err != nil {
			t.Fatalf("Verify(% x) = %v", m, err)
		}
	}
	if err := Verify(d, "", Limits{}); err == nil {
		t.Fatal("Verify with an empty author succeeded")
	}
	if err := Verify(d, alice, Limits{MaxKeyLen: -1}); err == nil {
		t.Fatal("Verify with a negative limit succeeded")
	}
	if err := Verify(d, alice, Limits{MaxKeyLen: 3}); !errors.Is(err, ErrKeyTooLong) {
		t.Fatalf("Verify with a small key limit = %v, want ErrKeyTooLong", err)
	}
}

func TestVerifyDoesNotAllocate(t *testing.T) {
	a := newStore(t, alice, epochMs)
	mustSet(t, a, at(0), "cursor", cursorJSON)
	d, s := a.EncodeDelta(), a.EncodeSnapshot()
	if n := testing.AllocsPerRun(100, func() {
		if Verify(d, alice, Limits{}) != nil || Verify(s, alice, Limits{}) != nil {
			t.Fatal("Verify failed")
		}
	}); n != 0 {
		t.Fatalf("Verify allocates %v times", n)
	}
}

func TestHotPathAllocations(t *testing.T) {
	a := newStore(t, alice, epochMs)
	b := newStore(t, bob, 1)
	v := []byte(cursorJSON)
	mustSet(t, a, at(0), "cursor", cursorJSON)
	mustApply(t, b, at(0), alice, a.EncodeDelta())
	setEncode := testing.AllocsPerRun(200, func() {
		_, _ = a.Set(at(1), "cursor", v)
		_ = a.EncodeDelta()
	})
	// Deltas with a 3-byte counter at offset 16, rewritten in place.
	var counter uint64 = 1 << 20
	d := tDelta(epochMs, tEntry{key: "cursor", counter: counter, value: cursorJSON})
	mustApply(t, b, at(0), alice, d)
	apply := testing.AllocsPerRun(200, func() {
		counter++
		binary.PutUvarint(d[16:], counter)
		if cs, err := b.Apply(at(1), alice, d); err != nil || len(cs) != 1 {
			t.Fatalf("Apply = %v, %v", cs, err)
		}
	})
	if setEncode > 2 || apply > 0.1 {
		t.Fatalf("allocations: set+encode %v (want <= 2), apply %v (want ~0: slab)", setEncode, apply)
	}
}

func TestHugeTTLStaysEncodable(t *testing.T) {
	a := newStore(t, alice, 1)
	if _, err := a.SetTTL(at(0), "k", nil, time.Duration(1<<63-1)); err != nil {
		t.Fatal(err)
	}
	for _, m := range [][]byte{a.EncodeDelta(), a.EncodeSnapshot()} {
		if err := Verify(m, alice, Limits{}); err != nil {
			t.Fatalf("Verify(% x) = %v", m, err)
		}
		b := newStore(t, bob, 1)
		mustApply(t, b, at(0), alice, m)
		if err := Verify(b.EncodeSnapshot(alice), alice, Limits{}); err != nil {
			t.Fatal(err)
		}
	}
}

// MaxSnapshotSize bounds every snapshot a store within the limits encodes:
// a store filled to the limits, with large counters and TTLs, encodes at
// most that many bytes, and not much less (the bound is tight within the
// varints' slack).
func TestMaxSnapshotSizeBoundsAFullStore(t *testing.T) {
	self := PeerID("\x00\x24\x08\x01\x12\x20" + strings.Repeat("\x07", 32))
	for _, lim := range []Limits{{}, {MaxKeyLen: 8, MaxValueSize: 4096, MaxKeysPerPeer: 4}, {MaxKeyLen: 200, MaxValueSize: 1, MaxKeysPerPeer: 100}} {
		bound, err := MaxSnapshotSize(len(self), lim)
		if err != nil {
			t.Fatal(err)
		}
		full, _ := lim.WithDefaults()
		s, err := New(Config{Self: self, Epoch: math.MaxUint64 >> 1, Limits: lim})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Unix(0, 0)
		for round := range 3 { // counters grow
			for k := range full.MaxKeysPerPeer {
				key := fmt.Sprintf("%0*d", full.MaxKeyLen, k)
				if _, err := s.SetTTL(now, key, bytes.Repeat([]byte{byte(round)}, full.MaxValueSize), 1000*time.Hour); err != nil {
					t.Fatal(err)
				}
			}
		}
		got := len(s.EncodeSnapshot(self))
		if got > bound {
			t.Errorf("limits %+v: a full snapshot is %d bytes, over MaxSnapshotSize %d", lim, got, bound)
		}
		if slack := bound - got; slack > 16*full.MaxKeysPerPeer+32 {
			t.Errorf("limits %+v: bound %d is %d bytes over a full snapshot (%d): too loose", lim, bound, slack, got)
		}
	}
	if _, err := MaxSnapshotSize(38, Limits{MaxValueSize: -1}); err == nil {
		t.Error("negative limits accepted")
	}
}
