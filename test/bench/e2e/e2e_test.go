package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/convene-p2p/convene/room"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// smokeOptions is a few-second version of the harness: N = 2 and 5, three
// latency rounds per mode at both (MinSamples 6 asks for no more), short
// room timings (room.LocalConfig) so the crash trial ends within Timeout,
// a 5-node 1 s load run and 10 rooms.
func smokeOptions() Options {
	return Options{
		Ns: []int{2, 5}, Degree: 3, Seed: 1,
		Room: room.LocalConfig(),
		Rate: 100, Cycles: 3, MinSamples: 6, Quiet: 300 * time.Millisecond,
		LeaveTrials: 2, JoinTrials: 2, CrashTrials: 1, JoinDegree: 2, Settle: 100 * time.Millisecond,
		LoadNodes: 5, LoadHz: 20, LoadDuration: time.Second, LoadHzAlt: 0, MemSettle: 0,
		Rooms: 10, RoomsWindow: 300 * time.Millisecond,
	}
}

// TestSmoke runs the short harness end to end and checks that it completes
// with every paced update delivered (delivery ratio 1.0, raw and Convene),
// every join, leave and crash observed by every member, every final load
// value delivered, and that the report and plots are written. It asserts no
// timing: the figures belong to the full run.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := smokeOptions()
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.PerN {
		if r.Rounds != o.rounds(r.N) || r.Raw.Sent != r.Rounds*r.N || r.Convene.Sent != r.Rounds*r.N {
			t.Errorf("N=%d: %d rounds, %d raw and %d Convene updates sent; want %d rounds of %d", r.N, r.Rounds, r.Raw.Sent, r.Convene.Sent, o.rounds(r.N), r.N)
		}
		for name, m := range map[string]ModeResult{"raw": r.Raw, "convene": r.Convene} {
			if m.Expected == 0 || m.Delivered != m.Expected {
				t.Errorf("N=%d %s: delivered %d of %d, want all", r.N, name, m.Delivered, m.Expected)
			}
		}
		if r.Leave.Complete != r.Leave.Trials || r.Leave.WrongReason != 0 {
			t.Errorf("N=%d leave: %d of %d trials complete, %d wrong reasons", r.N, r.Leave.Complete, r.Leave.Trials, r.Leave.WrongReason)
		}
		if r.Join.Complete != r.Join.Trials {
			t.Errorf("N=%d join: %d of %d trials complete", r.N, r.Join.Complete, r.Join.Trials)
		}
		if r.Crash.Complete != r.Crash.Trials || r.Crash.Missing != 0 {
			t.Errorf("N=%d crash: %d of %d trials complete, %d members missing", r.N, r.Crash.Complete, r.Crash.Trials, r.Crash.Missing)
		}
	}
	if l := res.Load; l == nil {
		t.Error("load run missing")
	} else {
		for name, p := range map[string]LoadPhase{"raw": l.Raw, "convene": l.Convene} {
			if p.FinalExpected == 0 || p.FinalOK != p.FinalExpected {
				t.Errorf("load %s: final values delivered %d of %d, want all", name, p.FinalOK, p.FinalExpected)
			}
		}
	}
	if res.Rooms == nil {
		t.Error("rooms run missing")
	}

	dir := t.TempDir()
	out := filepath.Join(dir, "BENCHMARKS-e2e.md")
	if err := WriteOutputs(res, "go test ./test/bench/e2e", out, filepath.Join(dir, "img")); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Targets", "## Publish → apply latency", "| rounds per mode |", "img/e2e-latency-cdf-n5.png", "## Load", "## 10 rooms on one node"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, r := range res.PerN {
		if _, err := os.Stat(filepath.Join(dir, "img", plotName(r.N))); err != nil {
			t.Errorf("plot for N=%d: %v", r.N, err)
		}
	}
}

func TestRoundsRaisedToMinSamples(t *testing.T) {
	for _, tc := range []struct{ cycles, minSamples, N, want int }{
		{10, 0, 2, 10},
		{30, 1000, 2, 500},
		{30, 1000, 10, 100},
		{30, 1000, 30, 34},
		{30, 1000, 50, 30},
		{30, 1000, 3, 334}, // ceil
		{10, 100, 50, 10},
	} {
		o := Options{Cycles: tc.cycles, MinSamples: tc.minSamples}
		if got := o.rounds(tc.N); got != tc.want {
			t.Errorf("Cycles %d, MinSamples %d, N=%d: %d rounds, want %d", tc.cycles, tc.minSamples, tc.N, got, tc.want)
		}
	}
	if o := FullOptions(); o.rounds(2) != 500 || o.rounds(10) != 100 {
		t.Errorf("FullOptions: %d rounds at N=2, %d at N=10; want 500 and 100", o.rounds(2), o.rounds(10))
	}
}

func TestParseCursorRoundTrip(t *testing.T) {
	for _, seq := range []uint32{0, 1, 899, 900, 12345, 809999} {
		v := cursorValue(seq)
		if len(v) != 17 {
			t.Fatalf("cursorValue(%d) = %q: %d bytes, want 17", seq, v, len(v))
		}
		got, ok := parseCursor(v)
		if !ok || got != seq {
			t.Errorf("parseCursor(%q) = %d, %v; want %d", v, got, ok, seq)
		}
	}
}

func TestRandomGraphConnectedWithDegree(t *testing.T) {
	for _, N := range []int{2, 3, 10, 50} {
		edges := randomGraph(N, 3, newRand(uint64(N)))
		if !connected(N, edges) {
			t.Errorf("N=%d: graph not connected", N)
		}
		out := make([]int, N)
		for _, e := range edges {
			out[e[0]]++
		}
		for i, d := range out {
			if d > min(3, N-1) {
				t.Errorf("N=%d: node %d dials %d others, want at most %d", N, i, d, min(3, N-1))
			}
		}
	}
}
