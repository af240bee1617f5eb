package ephemeral

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// checkInvariants checks the store's internal bookkeeping.
func checkInvariants(s *Store) error {
	if len(s.peers) > s.lim.MaxPeers {
		return fmt.Errorf("%d peers > MaxPeers %d", len(s.peers), s.lim.MaxPeers)
	}
	var minDeadline time.Time
	note := func(t time.Time) {
		if !t.IsZero() && (minDeadline.IsZero() || t.Before(minDeadline)) {
			minDeadline = t
		}
	}
	dirty := 0
	for id, p := range s.peers {
		if string(p.id) != id {
			return fmt.Errorf("peer %x filed under %x", p.id, id)
		}
		live, tombs := 0, 0
		for i := range p.entries {
			e := &p.entries[i]
			if i > 0 && p.entries[i-1].key >= e.key {
				return fmt.Errorf("peer %x: entries not sorted at %d", p.id, i)
			}
			if e.tomb {
				tombs++
				if !e.deadline.IsZero() {
					return fmt.Errorf("peer %x: tombstone %q with a deadline", p.id, e.key)
				}
			} else {
				live++
			}
			if e.counter > p.high {
				return fmt.Errorf("peer %x: %q counter %d > high %d", p.id, e.key, e.counter, p.high)
			}
			if e.dirty {
				if p != s.me {
					return fmt.Errorf("remote peer %x has a dirty entry", p.id)
				}
				dirty++
			}
		}
		if live != p.live || tombs != p.tombs {
			return fmt.Errorf("peer %x: live/tombs %d/%d, counted %d/%d", p.id, p.live, p.tombs, live, tombs)
		}
		if live > s.lim.MaxKeysPerPeer || tombs > s.lim.MaxKeysPerPeer {
			return fmt.Errorf("peer %x: %d live, %d tombstones; limit %d", p.id, live, tombs, s.lim.MaxKeysPerPeer)
		}
		if want := p.earliestTTL(); !want.Equal(p.ttlMin) {
			return fmt.Errorf("peer %x: ttlMin %v, want %v", p.id, p.ttlMin, want)
		}
		if p != s.me {
			note(p.heard.Add(s.timeout))
		}
		note(p.ttlMin)
	}
	if dirty != s.dirty {
		return fmt.Errorf("dirty count %d, counted %d", s.dirty, dirty)
	}
	switch {
	case minDeadline.IsZero() && s.lbSet && s.lbExact:
		return fmt.Errorf("exact bound %v with no deadline", s.lb)
	case !minDeadline.IsZero() && (!s.lbSet || minDeadline.Before(s.lb)):
		return fmt.Errorf("bound %v (set %v) above the earliest deadline %v", s.lb, s.lbSet, minDeadline)
	case !minDeadline.IsZero() && s.lbExact && !minDeadline.Equal(s.lb):
		return fmt.Errorf("exact bound %v, earliest deadline %v", s.lb, minDeadline)
	}
	return nil
}

// reencode writes a decoded message back; valid input must come out byte for byte.
func reencode(d *decoded) []byte {
	b := []byte{formatVersion, d.kind}
	entries := func(r *wireRecord) {
		b = binary.AppendUvarint(b, uint64(r.end-r.first))
		for i := r.first; i < r.end; i++ {
			w := &d.ents[i]
			b = appendEntry(b, string(d.key(w)), w.counter, uint64(w.ttl/time.Millisecond), d.value(w), w.tomb)
		}
	}
	if d.kind == kindDelta {
		b = binary.AppendUvarint(b, d.recs[0].epoch)
		entries(&d.recs[0])
		return b
	}
	b = binary.AppendUvarint(b, uint64(len(d.recs)))
	for i := range d.recs {
		r := &d.recs[i]
		b = binary.AppendUvarint(b, uint64(len(r.peer)))
		b = append(b, r.peer...)
		b = binary.AppendUvarint(b, r.epoch)
		b = binary.AppendUvarint(b, r.complete)
		entries(r)
	}
	return b
}

// fuzzLimits are small, so that random input reaches the limits.
var fuzzLimits = Limits{MaxKeyLen: 16, MaxValueSize: 64, MaxKeysPerPeer: 4, MaxPeers: 6}

// fuzzSeeds returns valid encodings and edge cases.
func fuzzSeeds(t testing.TB) [][]byte {
	a := newStoreLim(t, alice, epochMs, fuzzLimits)
	mustSet(t, a, at(0), "cursor", cursorJSON)
	d1 := a.EncodeDelta()
	if _, err := a.SetTTL(at(0), "typing", []byte("1"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	mustDelete(t, a, at(0), "cursor")
	mustSet(t, a, at(0), "name", "Ann")
	d2 := a.EncodeDelta()
	hub := newStoreLim(t, "hub", 1, fuzzLimits)
	mustApply(t, hub, at(0), alice, a.EncodeSnapshot())
	mustApply(t, hub, at(0), bob, tDelta(3, tEntry{key: "k", counter: 1, value: "v"}))
	return [][]byte{
		d1, d2, a.EncodeSnapshot(), hub.EncodeSnapshot(),
		tDelta(1), tDelta(epochMs + 1), tSnap(), tSnap(tRec{peer: string(alice), epoch: 2, complete: 5}),
		tDelta(2, tEntry{key: "a", counter: 9, tomb: true}, tEntry{key: "b", counter: 1 << 40, ttlMs: 1, value: ""}),
		tSnap(tRec{peer: string(alice), epoch: epochMs, complete: 1 << 62, es: []tEntry{{key: "é", counter: 3, ttlMs: uint64(maxTTLMillis), value: "x"}}}),
		nil, {1}, {1, 1}, {1, 2}, {1, 2, 0}, {0, 1, 1, 0}, {1, 9},
		{1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0},
		{1, 1, 1, 0x80, 0x80, 0x80, 0x80, 0x01},
	}
}

func FuzzVerify(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := Verify(data, alice, fuzzLimits)
		var d decoded
		derr := decode(data, &fuzzLimits, &d, "")
		if err == nil {
			if derr != nil {
				t.Fatalf("Verify accepts what decode rejects: %v", derr)
			}
			if re := reencode(&d); !bytes.Equal(re, data) {
				t.Fatalf("not canonical:\n in % x\nout % x", data, re)
			}
			return
		}
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrForeignPeer) {
			t.Fatalf("Verify error of no documented kind: %v", err)
		}
		if !strings.HasPrefix(err.Error(), "ephemeral: ") {
			t.Fatalf("error without the package prefix: %v", err)
		}
	})
}

// fuzzReceiver returns a store that already holds some state of alice and bob.
func fuzzReceiver(t *testing.T) *Store {
	s := newStoreLim(t, carol, 1, fuzzLimits)
	mustApply(t, s, at(0), alice, tDelta(epochMs,
		tEntry{key: "cursor", counter: 5, value: cursorJSON},
		tEntry{key: "gone", counter: 6, tomb: true},
		tEntry{key: "typing", counter: 7, ttlMs: 3000, value: "1"}))
	mustApply(t, s, at(0), bob, tDelta(3, tEntry{key: "k", counter: 1, value: "v"}))
	mustSet(t, s, at(0), "mine", "x")
	return s
}

// applyChecked applies data, then checks the outcome against Verify and the invariants.
func applyChecked(t *testing.T, trusted bool, data []byte) {
	s := fuzzReceiver(t)
	before := s.EncodeSnapshot()
	var (
		cs  []Change
		err error
	)
	if trusted {
		cs, err = s.ApplyTrusted(at(1_000), data)
	} else {
		cs, err = s.Apply(at(1_000), alice, data)
	}
	if ierr := checkInvariants(s); ierr != nil {
		t.Fatalf("invariants after Apply (err %v): %v", err, ierr)
	}
	if err != nil {
		if cs != nil || !bytes.Equal(before, s.EncodeSnapshot()) {
			t.Fatalf("failed Apply (%v) changed the store", err)
		}
		if !trusted && Verify(data, alice, fuzzLimits) == nil &&
			!errors.Is(err, ErrTooManyKeys) && !errors.Is(err, ErrTooManyPeers) {
			t.Fatalf("Verify accepts what Apply rejects: %v", err)
		}
		return
	}
	if !trusted {
		if verr := Verify(data, alice, fuzzLimits); verr != nil {
			t.Fatalf("Apply accepts what Verify rejects: %v", verr)
		}
	}
	for _, c := range cs {
		if c.Empty() || c.Cause != CauseRemote || c.Peer == carol {
			t.Fatalf("bad change %+v", c)
		}
	}
	// Whatever went in comes out as valid, re-appliable data.
	for _, p := range s.Peers() {
		if err := Verify(s.EncodeSnapshot(p), p, fuzzLimits); err != nil {
			t.Fatalf("snapshot of %x after Apply is invalid: %v", p, err)
		}
	}
	// Applying the same data again is a no-op.
	if trusted {
		cs, err = s.ApplyTrusted(at(1_000), data)
	} else {
		cs, err = s.Apply(at(1_000), alice, data)
	}
	if err != nil || cs != nil {
		t.Fatalf("applying the same data twice: %+v, %v", cs, err)
	}
	s.Expire(at(100_000))
	if ierr := checkInvariants(s); ierr != nil {
		t.Fatalf("invariants after Expire: %v", ierr)
	}
}

func FuzzApply(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) { applyChecked(t, false, data) })
}

func FuzzApplyTrusted(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) { applyChecked(t, true, data) })
}
