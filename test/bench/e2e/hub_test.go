package main

import (
	"bytes"
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestHubSmoke runs a tiny hub comparison (N = 2 in two processes per side,
// three latency rounds per mode, one join, leave and kill -9 trial, a 4-node
// 1 s load run) with both sides and the raw floor, and checks the report's
// form: every figure row with a value for the hub and for Convene and a
// Convene ÷ hub ratio, every update delivered, every trial complete, every
// final load value delivered. It judges no figure.
func TestHubSmoke(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skipf("node not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := DefaultHubOptions()
	o.Ns, o.Cycles, o.MinSamples, o.Quiet = []int{2}, 3, 3, 300*time.Millisecond
	o.LeaveTrials, o.JoinTrials, o.KillTrials, o.StopTrials, o.Settle = 1, 1, 1, 0, 100*time.Millisecond
	o.LoadNodes, o.LoadDur, o.LoadDrain = 4, time.Second, 20*time.Second
	var progress bytes.Buffer
	o.Progress = &progress
	res, err := hubRun(ctx, o)
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	var out bytes.Buffer
	writeHubReport(&out, res, "test")
	s := out.String()
	t.Log("\n" + s)

	if len(res.Runs) != 1 || res.Runs[0].Procs != 2 {
		t.Fatalf("%d runs, want one N=2 run in two processes per side", len(res.Runs))
	}
	r := res.Runs[0]
	for _, mode := range []string{"hub", "convene", "raw"} {
		m := r.Modes[mode]
		if m == nil || m.Sent != 3*2 || m.Expected != m.Sent || m.Delivered != m.Expected || m.Bytes <= 0 || m.CPU <= 0 {
			t.Errorf("%s: %+v; want 6 updates sent, all delivered, bytes and CPU counted", mode, m)
		}
	}
	for name, sd := range r.Sides {
		if sd.Join.Complete != 1 || sd.Leave.Complete != 1 || sd.Kill.Complete != 1 || sd.Leave.Missing+sd.Kill.Missing != 0 {
			t.Errorf("%s: join %d, leave %d (%d missing), kill %d (%d missing) of 1 trial complete", name,
				sd.Join.Complete, sd.Leave.Complete, sd.Leave.Missing, sd.Kill.Complete, sd.Kill.Missing)
		}
	}
	if len(res.Load) != 2 {
		t.Fatalf("%d load runs, want hub and Convene", len(res.Load))
	}
	for _, l := range res.Load {
		if l.Sent == 0 || l.FinalExpected != 4*3 || l.FinalOK != l.FinalExpected {
			t.Errorf("load %s: %d sent, final values %d of %d; want all of 12", l.Side, l.Sent, l.FinalOK, l.FinalExpected)
		}
	}

	i := strings.Index(s, hubTableHeader)
	if i < 0 {
		t.Fatalf("no table header %q", hubTableHeader)
	}
	value := regexp.MustCompile(`^[0-9]+(\.[0-9]+)?( (ms|s|B|µs))?$`)
	ratio := regexp.MustCompile(`^[0-9]+\.[0-9]{2}×$`)
	figures := map[string]bool{}
	for _, l := range strings.Split(s[i:], "\n")[2:] {
		if !strings.HasPrefix(l, "| ") {
			break
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		if len(cells) != 8 {
			t.Fatalf("row %q: %d cells, want 8", l, len(cells))
		}
		for k := range cells {
			cells[k] = strings.TrimSpace(cells[k])
		}
		fig := cells[2]
		figures[fig] = true
		if strings.HasPrefix(fig, "SIGSTOP") {
			continue // no SIGSTOP trial in the smoke run
		}
		if !value.MatchString(cells[3]) || !value.MatchString(cells[4]) || !ratio.MatchString(cells[6]) {
			t.Errorf("row %q: want a hub and a Convene figure and their ratio", l)
		}
		if !strings.HasPrefix(fig, "join") && !strings.HasPrefix(fig, "leave") && !strings.HasPrefix(fig, "kill") &&
			(!value.MatchString(cells[5]) || !ratio.MatchString(cells[7])) {
			t.Errorf("row %q: want a raw GossipSub figure and the ratio to it", l)
		}
	}
	for _, fig := range []string{"latency p50", "latency p99", "delivery ratio", "bytes per delivery", "CPU per delivery (all processes)",
		"join: newcomer sees all, p50", "leave: gone everywhere, max", "kill -9: gone everywhere, max", "SIGSTOP: gone everywhere, max"} {
		if !figures[fig] {
			t.Errorf("no row %q", fig)
		}
	}
	for _, want := range []string{"| hub | ", "| convene | ", "Targets (issue 14", "every final value delivered"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestHubReportWithoutRaw checks that a run without the raw GossipSub mode
// (-raw=false) is reported, with "–" in the raw column, instead of
// panicking on the missing mode.
func TestHubReportWithoutRaw(t *testing.T) {
	mode := func(d int) *HubMode {
		return &HubMode{Sent: 10, Expected: 10, Delivered: d, Bytes: 1000, BytesNet: 900, CPU: 5e6, Lat: Dist{Count: d, P50: 1, P99: 2}}
	}
	res := &HubResults{Runs: []HubRun{{N: 2, Procs: 2, Layout: "2 procs", Modes: map[string]*HubMode{"hub": mode(10), "convene": mode(10)}}}}
	var out bytes.Buffer
	writeHubReport(&out, res, "test")
	row := regexp.MustCompile(`(?m)^\| 2 \| 2 procs \| bytes per delivery \| 100 B \| 100 B \| – \| 1\.00× \| – \|$`)
	if !row.MatchString(out.String()) {
		t.Errorf("no bytes row with an empty raw column in\n%s", out.String())
	}
}
