package main

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"time"
)

// settings is the measuring method shared with bench.mjs.
type settings struct {
	runs    int           // timed runs per figure; the median is reported
	minTime time.Duration // each timed run lasts at least this long
}

// sample is one measured figure. The JSON names are those bench.mjs prints.
type sample struct {
	NsPerOp     float64   `json:"nsPerOp"`     // median of RunsNsPerOp
	RunsNsPerOp []float64 `json:"runsNsPerOp"` // ns per operation of each timed run
	OpsPerRun   int       `json:"opsPerRun"`   // operations in one timed run
}

// opsPerSec is the median rate.
func (s sample) opsPerSec() float64 {
	if s.NsPerOp <= 0 {
		return math.NaN()
	}
	return 1e9 / s.NsPerOp
}

// applySample is an apply-rate figure with its untimed count check.
type applySample struct {
	sample
	Verified verified `json:"verified"`
}

// verified says how many of the updates sent a receiver reported as applied.
type verified struct {
	Sent    int `json:"sent"`
	Applied int `json:"applied"`
}

// snapSample is a snapshot-apply figure (one operation = one whole snapshot into a fresh store).
type snapSample struct {
	sample
	Bytes int `json:"bytes"` // size of the snapshot; for N single-peer snapshots, their sum
}

// measure calls batch(n), which must return the time n operations took (timing only the
// operations), until it finds an n that takes at least minTime (this is also the warm-up), then
// makes st.runs timed runs of n operations and reports the median time per operation.
func (st settings) measure(startN int, batch func(n int) (time.Duration, error)) (sample, error) {
	n := max(startN, 1)
	el, err := batch(n)
	for err == nil && el < st.minTime {
		n = grow(n, el, st.minTime)
		el, err = batch(n)
	}
	if err != nil {
		return sample{}, err
	}
	runs := make([]float64, 0, st.runs)
	for range st.runs {
		runtime.GC()
		t, err := batch(n)
		for err == nil && t < st.minTime { // the machine got faster: more operations, same run
			n = grow(n, t, st.minTime)
			t, err = batch(n)
		}
		if err != nil {
			return sample{}, err
		}
		runs = append(runs, float64(t)/float64(n))
	}
	return sample{NsPerOp: median(runs), RunsNsPerOp: runs, OpsPerRun: n}, nil
}

// grow returns the op count that should take 1.2 × target, given that n took el.
func grow(n int, el, target time.Duration) int {
	f := 100.0
	if el > 0 {
		f = min(float64(target)/float64(el)*1.2, 100)
	}
	return max(n+1, int(math.Ceil(float64(n)*f)))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// checkf returns an error for a failed verification.
func checkf(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf("compare: check failed: "+format, args...)
}

// merge returns the runs of a and b as one sample (a may be the zero sample).
func merge(a, b sample) sample {
	runs := append(slices.Clone(a.RunsNsPerOp), b.RunsNsPerOp...)
	return sample{NsPerOp: median(runs), RunsNsPerOp: runs, OpsPerRun: b.OpsPerRun}
}

func mergeApply(a, b applySample) applySample {
	return applySample{
		sample:   merge(a.sample, b.sample),
		Verified: verified{Sent: a.Verified.Sent + b.Verified.Sent, Applied: a.Verified.Applied + b.Verified.Applied},
	}
}

func mergeSnaps(a, b map[string]snapSample) map[string]snapSample {
	out := make(map[string]snapSample, len(b))
	for k, v := range b {
		out[k] = snapSample{sample: merge(a[k].sample, v.sample), Bytes: v.Bytes}
	}
	return out
}

// mergeConvene adds round b to the rounds in a (nil for none).
func mergeConvene(a, b *conveneResult) *conveneResult {
	if a == nil {
		return b
	}
	m := *b
	m.SetEncode = merge(a.SetEncode, b.SetEncode)
	m.Apply = mergeApply(a.Apply, b.Apply)
	m.SnapshotPerAuthor = mergeSnaps(a.SnapshotPerAuthor, b.SnapshotPerAuthor)
	m.SnapshotTrusted = mergeSnaps(a.SnapshotTrusted, b.SnapshotTrusted)
	return &m
}

// mergeJS adds round b to the rounds in a (nil for none).
func mergeJS(a, b *jsResult) *jsResult {
	if a == nil {
		return b
	}
	m := *b
	m.Loro.SetEncode = merge(a.Loro.SetEncode, b.Loro.SetEncode)
	m.Loro.SetSubscribe = merge(a.Loro.SetSubscribe, b.Loro.SetSubscribe)
	m.Loro.Apply = mergeApply(a.Loro.Apply, b.Loro.Apply)
	m.Loro.Snapshot = mergeSnaps(a.Loro.Snapshot, b.Loro.Snapshot)
	m.Yjs.SetEncode = merge(a.Yjs.SetEncode, b.Yjs.SetEncode)
	m.Yjs.Apply = mergeApply(a.Yjs.Apply, b.Yjs.Apply)
	m.Yjs.Snapshot = mergeSnaps(a.Yjs.Snapshot, b.Yjs.Snapshot)
	return &m
}
