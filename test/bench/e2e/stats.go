package main

import (
	"bufio"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Dist summarises a set of latency samples, in milliseconds.
type Dist struct {
	Count                   int
	P50, P90, P99, Max, Min float64
}

// dist computes a Dist; samples is sorted in place.
func dist(samples []float64) Dist {
	if len(samples) == 0 {
		return Dist{}
	}
	slices.Sort(samples)
	return Dist{
		Count: len(samples),
		P50:   quantile(samples, 0.50),
		P90:   quantile(samples, 0.90),
		P99:   quantile(samples, 0.99),
		Max:   samples[len(samples)-1],
		Min:   samples[0],
	}
}

// quantile is the nearest-rank quantile of sorted samples.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// histogram is a log-bucketed latency histogram (2% wide buckets from 1 µs
// to about 100 s) for runs with millions of samples. Safe for concurrent use.
type histogram struct {
	mu     sync.Mutex
	counts []uint64
	n      uint64
	max    time.Duration
}

const (
	histBase    = 1.02
	histBuckets = 950
)

func newHistogram() *histogram { return &histogram{counts: make([]uint64, histBuckets)} }

func (h *histogram) add(d time.Duration) {
	us := float64(d) / float64(time.Microsecond)
	i := 0
	if us > 1 {
		i = int(math.Log(us) / math.Log(histBase))
	}
	i = max(0, min(i, histBuckets-1))
	h.mu.Lock()
	h.counts[i]++
	h.n++
	h.max = max(h.max, d)
	h.mu.Unlock()
}

// quantile returns the upper edge of the bucket holding quantile q, in ms.
func (h *histogram) quantile(q float64) float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	var acc uint64
	for i, c := range h.counts {
		acc += c
		if acc >= rank {
			return math.Pow(histBase, float64(i+1)) / 1000
		}
	}
	return ms(h.max)
}

func (h *histogram) dist() Dist {
	h.mu.Lock()
	n, mx := h.n, h.max
	h.mu.Unlock()
	if n == 0 {
		return Dist{}
	}
	return Dist{Count: int(n), P50: h.quantile(0.5), P90: h.quantile(0.9), P99: h.quantile(0.99), Max: ms(mx)}
}

// Machine describes where a run happened.
type Machine struct {
	CPUModel   string
	Cores      int
	GOMAXPROCS int
	GoVersion  string
	OS, Arch   string
	MemTotal   string
	LoadBefore string
	LoadAfter  string
}

func machine() Machine {
	return Machine{
		CPUModel:   cpuModel(),
		Cores:      runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		MemTotal:   memTotal(),
		LoadBefore: loadAvg(),
	}
}

func cpuModel() string {
	return firstField("/proc/cpuinfo", "model name")
}

func memTotal() string {
	return strings.TrimSpace(strings.TrimPrefix(firstField("/proc/meminfo", "MemTotal"), ":"))
}

func firstField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, key) {
			if i := strings.IndexByte(line, ':'); i >= 0 {
				return strings.TrimSpace(line[i+1:])
			}
		}
	}
	return "unknown"
}

// loadAvg returns the 1, 5 and 15 minute load averages, or "unknown".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	fs := strings.Fields(string(b))
	if len(fs) < 3 {
		return "unknown"
	}
	return strings.Join(fs[:3], " ")
}

// memSnapshot is the Go heap and goroutines after a full GC.
type memSnapshot struct {
	HeapAlloc  uint64
	StackInuse uint64
	Goroutines int
}

func gcSnapshot() memSnapshot {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memSnapshot{HeapAlloc: m.HeapAlloc, StackInuse: m.StackInuse, Goroutines: runtime.NumGoroutine()}
}

// cpuMeter measures process CPU time (user+system) over an interval.
type cpuMeter struct{ u, s time.Duration }

func startCPU() cpuMeter { u, s := cpuTime(); return cpuMeter{u, s} }

func (m cpuMeter) elapsed() time.Duration {
	u, s := cpuTime()
	return (u - m.u) + (s - m.s)
}
