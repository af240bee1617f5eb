package ephemeral

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"
)

// Benchmarks of the hot paths. docs/BENCHMARKS.md compares them with Loro EphemeralStore
// and Yjs awareness; run with:
//
//	go test -run='^$' -bench=. -benchmem ./ephemeral

// cpuMeter reports "cpu-ns/op": process CPU time per op (see cpuTime).
type cpuMeter struct {
	start time.Duration
	ok    bool
}

func startCPU() cpuMeter {
	t, ok := cpuTime()
	return cpuMeter{t, ok}
}

func (m cpuMeter) report(b *testing.B) {
	if t, ok := cpuTime(); ok && m.ok && b.N > 0 {
		b.ReportMetric(float64(t-m.start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkSetEncode: one local cursor write and its delta, as a room publishes it.
// bytes/update is the size of the first update of a run (counter 1, unix-ms epoch); the
// counter adds a byte at 128 and at 16384 writes.
func BenchmarkSetEncode(b *testing.B) {
	s := newStore(b, "12D3KooWAlicePeerIDxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", epochMs)
	v := []byte(cursorJSON)
	if _, err := s.Set(t0, "cursor", v); err != nil {
		b.Fatal(err)
	}
	first := len(s.EncodeDelta())
	now := t0
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		if _, err := s.Set(now, "cursor", v); err != nil {
			b.Fatal(err)
		}
		if s.EncodeDelta() == nil {
			b.Fatal("no delta")
		}
	}
	cpu.report(b)
	b.ReportMetric(float64(first), "bytes/update")
}

// BenchmarkApplyDelta: a receiver applies one new cursor update from a known peer. Each
// iteration rewrites the 4-byte counter in place, so every update is new (not a duplicate).
func BenchmarkApplyDelta(b *testing.B) {
	for _, peers := range []int{1, 1000} {
		b.Run(fmt.Sprintf("peers=%d", peers), func(b *testing.B) {
			s := newStore(b, bob, 1)
			for i := range peers - 1 {
				id := PeerID(fmt.Sprintf("12D3KooWPeer%040d", i))
				mustApply(b, s, t0, id, tDelta(epochMs, tEntry{key: "cursor", counter: 1, value: cursorJSON}))
			}
			author := PeerID("12D3KooWAlicePeerIDxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
			counter := uint64(1 << 21) // 4 bytes as a varint up to 1<<28
			d := tDelta(epochMs, tEntry{key: "cursor", counter: counter, value: cursorJSON})
			const counterAt = 16 // version, kind, 6-byte epoch, count, head, "cursor"
			mustApply(b, s, t0, author, d)
			now := t0
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				counter++
				binary.PutUvarint(d[counterAt:], counter)
				if _, err := s.Apply(now, author, d); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report(b)
			if v, _ := s.Version(author); v.Counter != counter {
				b.Fatalf("counter %d, want %d: updates were not applied", v.Counter, counter)
			}
		})
	}
}

// BenchmarkVerifyDelta: what a relay's topic validator does per presence message.
func BenchmarkVerifyDelta(b *testing.B) {
	d := tDelta(epochMs, tEntry{key: "cursor", counter: 1 << 21, value: cursorJSON})
	author := PeerID("12D3KooWAlicePeerIDxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		if err := Verify(d, author, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// roomOf returns the single-record snapshots of n peers, each with a cursor and a name, and
// a hub store holding all of them.
func roomOf(b *testing.B, n int) (ids []PeerID, snaps [][]byte, hub *Store) {
	hub = newStore(b, "hub", 1)
	for i := range n {
		id := PeerID(fmt.Sprintf("12D3KooWPeer%040d", i)) // 52 bytes, like a base58 peer ID
		s := newStore(b, id, epochMs+uint64(i))
		mustSet(b, s, t0, "name", fmt.Sprintf("peer %d", i))
		mustSet(b, s, t0, "cursor", cursorJSON)
		ids = append(ids, id)
		snaps = append(snaps, s.EncodeSnapshot(id))
		mustApply(b, hub, t0, id, snaps[i])
	}
	return ids, snaps, hub
}

func BenchmarkSnapshotEncode(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			_, _, hub := roomOf(b, n)
			var size int
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				size = len(hub.EncodeSnapshot())
			}
			cpu.report(b)
			b.ReportMetric(float64(size), "bytes/snapshot")
		})
	}
}

// BenchmarkSnapshotApply: a newcomer learns a whole room. "per-author" applies each peer's
// own snapshot with Apply (the network path: one signed record per author); "trusted"
// applies one multi-peer snapshot with ApplyTrusted. Each iteration starts from an empty
// store.
func BenchmarkSnapshotApply(b *testing.B) {
	for _, n := range []int{100, 1000} {
		ids, snaps, hub := roomOf(b, n)
		all := hub.EncodeSnapshot(ids...)
		lim := Limits{MaxPeers: n + 1}
		b.Run(fmt.Sprintf("peers=%d/per-author", n), func(b *testing.B) {
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				s := newStoreLim(b, "newcomer", 1, lim)
				for i, id := range ids {
					if _, err := s.Apply(t0, id, snaps[i]); err != nil {
						b.Fatal(err)
					}
				}
			}
			cpu.report(b)
		})
		b.Run(fmt.Sprintf("peers=%d/trusted", n), func(b *testing.B) {
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				s := newStoreLim(b, "newcomer", 1, lim)
				cs, err := s.ApplyTrusted(t0, all)
				if err != nil || len(cs) != n {
					b.Fatalf("%d changes, %v", len(cs), err)
				}
			}
			cpu.report(b)
			b.ReportMetric(float64(len(all)), "bytes/snapshot")
		})
	}
}

// BenchmarkExpireIdle: the room loop's periodic Expire when nothing is due, 1000 peers.
func BenchmarkExpireIdle(b *testing.B) {
	_, _, hub := roomOf(b, 1000)
	now := t0.Add(time.Second)
	b.ReportAllocs()
	for b.Loop() {
		if hub.Expire(now) != nil {
			b.Fatal("something expired")
		}
	}
}
