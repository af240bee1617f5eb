package main

import (
	"testing"
	"time"
)

// The Convene side of the comparison as standard Go benchmarks, for profiling:
//
//	go test ./test/bench/compare -run '^$' -bench . -cpuprofile /tmp/cpu.out

func BenchmarkConveneSetEncode(b *testing.B) {
	s, err := newStore(peerID(0), 1, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Set(time.Now(), keyCursor, cursorValue(i)); err != nil {
			b.Fatal(err)
		}
		if len(s.EncodeDelta()) == 0 {
			b.Fatal("empty delta")
		}
	}
}

func BenchmarkConveneApply(b *testing.B) {
	sender := peerID(1)
	stream, err := conveneStream(sender, 1, b.N)
	if err != nil {
		b.Fatal(err)
	}
	rx, err := newStore(peerID(0), 1, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := rx.Apply(time.Now(), sender, stream[i]); err != nil {
			b.Fatal(err)
		}
	}
}

func benchSnapshot(b *testing.B, n int, trusted bool) {
	ids, singles, multi, err := snapshotInputs(1, n)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer() // one fresh receiver per op, made outside the timed region
		rx, err := newStore(peerID(0), 1, n)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if trusted {
			if _, err := rx.ApplyTrusted(time.Now(), multi); err != nil {
				b.Fatal(err)
			}
			continue
		}
		for p := range n {
			if _, err := rx.Apply(time.Now(), ids[p], singles[p]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkConveneSnapshot1000PerAuthor(b *testing.B) { benchSnapshot(b, 1000, false) }
func BenchmarkConveneSnapshot1000Trusted(b *testing.B)   { benchSnapshot(b, 1000, true) }
func BenchmarkConveneSnapshot100PerAuthor(b *testing.B)  { benchSnapshot(b, 100, false) }
func BenchmarkConveneSnapshot100Trusted(b *testing.B)    { benchSnapshot(b, 100, true) }
