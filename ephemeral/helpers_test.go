package ephemeral

import (
	"encoding/binary"
	"maps"
	"slices"
	"testing"
	"time"
)

// t0 is the tests' reference time; every test passes its own explicit now.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// at returns t0 plus ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

const (
	alice PeerID = "alice"
	bob   PeerID = "bob"
	carol PeerID = "carol"
)

func newStore(t testing.TB, self PeerID, epoch uint64) *Store {
	t.Helper()
	s, err := New(Config{Self: self, Epoch: epoch, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func newStoreLim(t testing.TB, self PeerID, epoch uint64, lim Limits) *Store {
	t.Helper()
	s, err := New(Config{Self: self, Epoch: epoch, Limits: lim})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func mustSet(t testing.TB, s *Store, now time.Time, key, value string) Change {
	t.Helper()
	c, err := s.Set(now, key, []byte(value))
	if err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
	return c
}

func mustDelete(t testing.TB, s *Store, now time.Time, key string) Change {
	t.Helper()
	c, err := s.Delete(now, key)
	if err != nil {
		t.Fatalf("Delete(%q): %v", key, err)
	}
	return c
}

func mustApply(t testing.TB, s *Store, now time.Time, author PeerID, data []byte) []Change {
	t.Helper()
	cs, err := s.Apply(now, author, data)
	if err != nil {
		t.Fatalf("Apply from %s: %v", author, err)
	}
	return cs
}

// delta sets/deletes on author via fn and returns the encoded delta.
func delta(t testing.TB, author *Store, fn func()) []byte {
	t.Helper()
	fn()
	d := author.EncodeDelta()
	if d == nil {
		t.Fatal("EncodeDelta: nil")
	}
	return d
}

// strState turns a state into comparable strings.
func strState(m map[string][]byte) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

func wantState(t testing.TB, s *Store, peer PeerID, want map[string]string) {
	t.Helper()
	got := strState(s.State(peer))
	if !maps.Equal(got, want) || (got == nil) != (want == nil) {
		t.Fatalf("State(%s) = %v, want %v", peer, got, want)
	}
}

func wantChanges(t testing.TB, got []Change, want ...Change) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("changes = %+v, want %+v", got, want)
	}
	for i := range got {
		if !sameChange(got[i], want[i]) {
			t.Fatalf("change %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func sameChange(a, b Change) bool {
	return a.Peer == b.Peer && a.Cause == b.Cause && a.Gone == b.Gone &&
		slices.Equal(a.Added, b.Added) && slices.Equal(a.Updated, b.Updated) && slices.Equal(a.Removed, b.Removed)
}

// Hand-built wire messages, for input the Store itself would never produce.

type tEntry struct {
	key     string
	counter uint64
	tomb    bool
	ttlMs   uint64
	value   string
}

type tRec struct {
	peer     string
	epoch    uint64
	complete uint64
	es       []tEntry
}

func tEntries(b []byte, es []tEntry) []byte {
	b = binary.AppendUvarint(b, uint64(len(es)))
	for _, e := range es {
		b = appendEntry(b, e.key, e.counter, e.ttlMs, []byte(e.value), e.tomb)
	}
	return b
}

func tDelta(epoch uint64, es ...tEntry) []byte {
	b := []byte{formatVersion, kindDelta}
	b = binary.AppendUvarint(b, epoch)
	return tEntries(b, es)
}

func tSnap(recs ...tRec) []byte {
	b := []byte{formatVersion, kindSnapshot}
	b = binary.AppendUvarint(b, uint64(len(recs)))
	for _, r := range recs {
		b = binary.AppendUvarint(b, uint64(len(r.peer)))
		b = append(b, r.peer...)
		b = binary.AppendUvarint(b, r.epoch)
		b = binary.AppendUvarint(b, r.complete)
		b = tEntries(b, r.es)
	}
	return b
}
