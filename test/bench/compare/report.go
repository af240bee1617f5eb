package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// report is everything one comparison measured.
type report struct {
	Command  string         `json:"command"`
	Machine  machine        `json:"machine"`
	Rounds   int            `json:"rounds"`
	Runs     int            `json:"runs"`
	MinTime  string         `json:"minTime"`
	Sizes    []int          `json:"sizes"`
	Convene  *conveneResult `json:"convene"`
	JS       *jsResult      `json:"js,omitempty"` // nil when the JS side was not run
	Rows     []row          `json:"rows"`
	JSReason string         `json:"jsReason,omitempty"` // why JS is missing
}

type machine struct {
	CPU  string `json:"cpu"`
	CPUs int    `json:"cpus"`
	OS   string `json:"os"`
	Arch string `json:"arch"`
	Go   string `json:"go"`
}

func machineInfo() machine {
	m := machine{CPU: "unknown", CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// row is one line of the table. Values are NaN where not measured.
type row struct {
	Metric       string  `json:"metric"`
	Unit         string  `json:"unit"` // "B", "ops/s" or "µs"
	Loro         float64 `json:"loro"`
	Yjs          float64 `json:"yjs"`
	Convene      float64 `json:"convene"`
	HigherBetter bool    `json:"higherBetter"`
	TargetVs     string  `json:"targetVs,omitempty"` // "Loro", "best" or "" (no target)
	TargetRatio  float64 `json:"targetRatio,omitempty"`
}

// ratio is Convene's figure divided by other's: for rates above 1 is better, for bytes and
// times below 1 is better.
func ratio(convene, other float64) float64 {
	if other == 0 || math.IsNaN(other) || math.IsNaN(convene) {
		return math.NaN()
	}
	return convene / other
}

// best is the better of Loro and Yjs.
func (r row) best() float64 {
	if math.IsNaN(r.Loro) || math.IsNaN(r.Yjs) {
		return math.NaN()
	}
	if r.HigherBetter {
		return max(r.Loro, r.Yjs)
	}
	return min(r.Loro, r.Yjs)
}

// target returns the ratio the target is judged on, and whether it is met.
func (r row) target() (float64, bool) {
	var q float64
	switch r.TargetVs {
	case "Loro":
		q = ratio(r.Convene, r.Loro)
	case "best":
		q = ratio(r.Convene, r.best())
	default:
		return math.NaN(), false
	}
	if r.HigherBetter {
		return q, q >= r.TargetRatio
	}
	return q, q <= r.TargetRatio
}

// MarshalJSON-friendly NaN: encoding/json rejects NaN, so rows are cleaned before encoding.
func (r row) clean() row {
	for _, p := range []*float64{&r.Loro, &r.Yjs, &r.Convene} {
		if math.IsNaN(*p) {
			*p = 0
		}
	}
	return r
}

// buildRows turns the results into the table rows.
func buildRows(c *conveneResult, js *jsResult, sizes []int) []row {
	nan := math.NaN()
	lb := func(f func(*jsResult) float64) float64 {
		if js == nil {
			return nan
		}
		return f(js)
	}
	rows := []row{
		{
			Metric: "bytes, one cursor move (Loro key: 20-digit id)", Unit: "B",
			Loro:    lb(func(j *jsResult) float64 { return float64(j.Loro.BytesShortID) }),
			Yjs:     lb(func(j *jsResult) float64 { return float64(j.Yjs.Bytes) }),
			Convene: float64(c.Bytes), TargetVs: "Loro", TargetRatio: 0.7,
		},
		{
			Metric: "bytes, one cursor move (Loro key: 52-char peer ID)", Unit: "B",
			Loro:    lb(func(j *jsResult) float64 { return float64(j.Loro.BytesPeerID) }),
			Yjs:     lb(func(j *jsResult) float64 { return float64(j.Yjs.Bytes) }),
			Convene: float64(c.Bytes),
		},
		{
			Metric: "set+encode, fresh cursor each time", Unit: "ops/s", HigherBetter: true,
			Loro: lb(func(j *jsResult) float64 {
				return max(j.Loro.SetEncode.opsPerSec(), j.Loro.SetSubscribe.opsPerSec())
			}),
			Yjs:     lb(func(j *jsResult) float64 { return j.Yjs.SetEncode.opsPerSec() }),
			Convene: c.SetEncode.opsPerSec(), TargetVs: "best", TargetRatio: 2,
		},
		{
			Metric: "apply, stream of distinct updates from one sender", Unit: "ops/s", HigherBetter: true,
			Loro:    lb(func(j *jsResult) float64 { return j.Loro.Apply.opsPerSec() }),
			Yjs:     lb(func(j *jsResult) float64 { return j.Yjs.Apply.opsPerSec() }),
			Convene: c.Apply.opsPerSec(), TargetVs: "best", TargetRatio: 2,
		},
	}
	for _, n := range sizes {
		k := strconv.Itoa(n)
		loro := lb(func(j *jsResult) float64 { return j.Loro.Snapshot[k].NsPerOp / 1e3 })
		yjs := lb(func(j *jsResult) float64 { return j.Yjs.Snapshot[k].NsPerOp / 1e3 })
		tv := ""
		if n == 1000 {
			tv = "Loro"
		}
		rows = append(rows,
			row{
				Metric: fmt.Sprintf("apply %d-peer snapshot; Convene: %d × Apply(author), one per peer", n, n), Unit: "µs",
				Loro: loro, Yjs: yjs, Convene: c.SnapshotPerAuthor[k].NsPerOp / 1e3, TargetVs: tv, TargetRatio: 0.5,
			},
			row{
				Metric: fmt.Sprintf("apply %d-peer snapshot; Convene: 1 × ApplyTrusted", n), Unit: "µs",
				Loro: loro, Yjs: yjs, Convene: c.SnapshotTrusted[k].NsPerOp / 1e3, TargetVs: tv, TargetRatio: 0.5,
			})
	}
	return rows
}

// tableHeader is the table's first line; the smoke test checks it.
const tableHeader = "| metric | Loro | Yjs | Convene | Convene ÷ Loro | Convene ÷ Yjs | Convene ÷ best | target | result |"

func fmtValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	switch unit {
	case "B":
		return fmt.Sprintf("%.0f B", v)
	case "ops/s":
		if v >= 1e6 {
			return fmt.Sprintf("%.2f M/s", v/1e6)
		}
		return fmt.Sprintf("%.1f k/s", v/1e3)
	case "µs":
		if v >= 100 {
			return fmt.Sprintf("%.0f µs", v)
		}
		return fmt.Sprintf("%.1f µs", v)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func fmtRatio(q float64) string {
	if math.IsNaN(q) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", q)
}

// writeTable prints the rows as a Markdown table.
func writeTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, tableHeader)
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---|---|")
	for _, r := range rows {
		tgt, res := "", ""
		if r.TargetVs != "" {
			cmp := "≤"
			if r.HigherBetter {
				cmp = "≥"
			}
			tgt = fmt.Sprintf("%s %.1f× %s", cmp, r.TargetRatio, r.TargetVs)
			q, ok := r.target()
			switch {
			case math.IsNaN(q):
				res = "n/a"
			case ok:
				res = "met (" + fmtRatio(q) + ")"
			default:
				res = "missed (" + fmtRatio(q) + ")"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Metric,
			fmtValue(r.Loro, r.Unit), fmtValue(r.Yjs, r.Unit), fmtValue(r.Convene, r.Unit),
			fmtRatio(ratio(r.Convene, r.Loro)), fmtRatio(ratio(r.Convene, r.Yjs)), fmtRatio(ratio(r.Convene, r.best())),
			tgt, res)
	}
}

// spread is max/min of the runs of a sample, as "±x%" around the median.
func spread(s sample) string {
	if len(s.RunsNsPerOp) == 0 || s.NsPerOp == 0 {
		return "n/a"
	}
	lo, hi := slices.Min(s.RunsNsPerOp), slices.Max(s.RunsNsPerOp)
	return fmt.Sprintf("%d runs of %d ops, %+.0f%%..%+.0f%%", len(s.RunsNsPerOp), s.OpsPerRun,
		(lo/s.NsPerOp-1)*100, (hi/s.NsPerOp-1)*100)
}

// writeReport prints the whole report.
func writeReport(w io.Writer, rep *report) {
	m := rep.Machine
	fmt.Fprintln(w, "## Convene presence vs Loro EphemeralStore and Yjs awareness")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "- command: `%s`\n", rep.Command)
	fmt.Fprintf(w, "- machine: %s, %d logical CPUs, %s/%s\n", m.CPU, m.CPUs, m.OS, m.Arch)
	if rep.JS != nil {
		v := rep.JS.Versions
		fmt.Fprintf(w, "- %s (Convene, in-process); node %s with loro-crdt %s, y-protocols %s, yjs %s (lib0 %s)\n",
			m.Go, rep.JS.Node, v["loro-crdt"], v["y-protocols"], v["yjs"], v["lib0"])
	} else {
		fmt.Fprintf(w, "- %s (Convene, in-process); JS side not run: %s\n", m.Go, rep.JSReason)
	}
	fmt.Fprintf(w, "- method: median of %d timed runs of at least %s each (%d round(s) of %d, Go and JS alternating), each run after a calibration run (warm-up); inputs prepared outside the timed region\n",
		rep.Rounds*rep.Runs, rep.MinTime, rep.Rounds, rep.Runs)
	fmt.Fprintln(w)
	writeTable(w, rep.Rows)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Ratios are Convene's figure divided by the other: for rates above 1× is better, for bytes and times below 1× is better.")
	fmt.Fprintln(w, "\"best\" is the better of Loro and Yjs for that row.")
	fmt.Fprintln(w)
	c := rep.Convene
	fmt.Fprintln(w, "Details:")
	fmt.Fprintf(w, "- Convene delta after an hour of cursor moves at 60 Hz (%d earlier writes): %d B (first move: %d B)\n", hourAt60, c.BytesAfterHour, c.Bytes)
	if j := rep.JS; j != nil {
		fmt.Fprintf(w, "- Loro set+encode: set + encode(key) %s, set with subscribeLocalUpdates %s; the table uses the faster\n",
			fmtValue(j.Loro.SetEncode.opsPerSec(), "ops/s"), fmtValue(j.Loro.SetSubscribe.opsPerSec(), "ops/s"))
		fmt.Fprintf(w, "- Loro apply stream: one distinct millisecond timestamp per update (mocked Date.now at the sender); receiver counted %d of %d applied (untimed run, each round)\n",
			j.Loro.Apply.Verified.Applied, j.Loro.Apply.Verified.Sent)
		fmt.Fprintf(w, "- Loro with the real clock: %d updates set within %d ms, receiver applied %d (same-millisecond updates are dropped)\n",
			j.Loro.RealClock.Sent, j.Loro.RealClock.SpanMs, j.Loro.RealClock.Applied)
		fmt.Fprintf(w, "- Yjs apply stream: receiver counted %d of %d applied (untimed run, each round)\n", j.Yjs.Apply.Verified.Applied, j.Yjs.Apply.Verified.Sent)
	}
	fmt.Fprintf(w, "- Convene apply stream: receiver counted %d of %d applied (last timed run of each round)\n", c.Apply.Verified.Applied, c.Apply.Verified.Sent)
	for _, n := range rep.Sizes {
		k := strconv.Itoa(n)
		line := fmt.Sprintf("- %d-peer snapshot size: Convene one snapshot %d B, %d single-peer snapshots %d B in total", n,
			c.SnapshotTrusted[k].Bytes, n, c.SnapshotPerAuthor[k].Bytes)
		if j := rep.JS; j != nil {
			line += fmt.Sprintf("; Loro encodeAll %d B; Yjs %d B", j.Loro.Snapshot[k].Bytes, j.Yjs.Snapshot[k].Bytes)
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w, "- run spread (fastest..slowest run vs the median):")
	fmt.Fprintf(w, "  - Convene set+encode %s; apply %s\n", spread(c.SetEncode), spread(c.Apply.sample))
	if j := rep.JS; j != nil {
		fmt.Fprintf(w, "  - Loro set+encode %s; set+subscribe %s; apply %s\n", spread(j.Loro.SetEncode), spread(j.Loro.SetSubscribe), spread(j.Loro.Apply.sample))
		fmt.Fprintf(w, "  - Yjs set+encode %s; apply %s\n", spread(j.Yjs.SetEncode), spread(j.Yjs.Apply.sample))
	}
	for _, n := range rep.Sizes {
		k := strconv.Itoa(n)
		line := fmt.Sprintf("  - %d-peer snapshot: Convene per-author %s; trusted %s", n,
			spread(c.SnapshotPerAuthor[k].sample), spread(c.SnapshotTrusted[k].sample))
		if j := rep.JS; j != nil {
			line += fmt.Sprintf("; Loro %s; Yjs %s", spread(j.Loro.Snapshot[k].sample), spread(j.Yjs.Snapshot[k].sample))
		}
		fmt.Fprintln(w, line)
	}
}
