package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"
)

// runHub is the hub subcommand: go run ./test/bench/e2e hub [flags].
func runHub(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("e2e hub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		ns        = fs.String("n", "2,10,30,50", "room sizes, comma-separated (empty: only the load run)")
		full      = fs.Bool("full", false, "the documented run: 500 updates (30 rounds at least) per mode per N, 10 join/leave, 3 kill -9 and 1 SIGSTOP trials")
		perNode   = fs.Int("per-node-max", 10, "also run one process per node at N up to this (0: only two processes)")
		raw       = fs.Bool("raw", true, "run raw GossipSub (the floor) in Convene's processes")
		rate      = fs.Float64("rate", 50, "updates per second over the room in the latency run")
		cycles    = fs.Int("cycles", -1, "latency rounds per mode at least (default 10, 30 with -full)")
		minSmp    = fs.Int("min-samples", -1, "updates per mode per N at least (default 100, 500 with -full)")
		trials    = fs.Int("trials", -1, "join and leave trials per N and side")
		kills     = fs.Int("kill-trials", -1, "kill -9 trials per N and side")
		stops     = fs.Int("stop-trials", -1, "SIGSTOP trials per N and side (two-process layout only; each waits for a timeout)")
		quiet     = fs.Duration("quiet", 0, "idle window for the background rates (default 5s, 10s with -full)")
		loadNodes = fs.Int("load-nodes", 50, "nodes in the load run (0 skips it)")
		loadHz    = fs.Float64("load-hz", 20, "cursor updates per second per node in the load run")
		loadDur   = fs.Duration("load-duration", 10*time.Second, "sending time of the load run")
		plots     = fs.String("plots", "", "write latency CDF plots (PNG) into this directory")
		jsonOut   = fs.String("json", "", "also write the results as JSON to this file")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	o := DefaultHubOptions()
	if *full {
		o = FullHubOptions()
	}
	var err error
	if o.Ns, err = parseNs(*ns); err != nil {
		fmt.Fprintln(stderr, "e2e hub:", err)
		return 2
	}
	o.PerNodeMax, o.Raw, o.Rate = *perNode, *raw, *rate
	if *cycles > 0 {
		o.Cycles = *cycles
	}
	if *minSmp >= 0 {
		o.MinSamples = *minSmp
	}
	if *trials >= 0 {
		o.JoinTrials, o.LeaveTrials = *trials, *trials
	}
	if *kills >= 0 {
		o.KillTrials = *kills
	}
	if *stops >= 0 {
		o.StopTrials = *stops
	}
	if *quiet > 0 {
		o.Quiet = *quiet
	}
	o.LoadNodes, o.LoadHz, o.LoadDur = *loadNodes, *loadHz, *loadDur
	if o.Rate <= 0 || o.LoadHz <= 0 || o.LoadDur <= 0 {
		fmt.Fprintln(stderr, "e2e hub: -rate, -load-hz and -load-duration must be positive")
		return 2
	}
	o.Progress = stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := hubRun(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	command := "go run ./test/bench/e2e hub"
	if len(args) > 0 {
		command += " " + strings.Join(args, " ")
	}
	writeHubReport(stdout, res, command)
	if *plots != "" {
		if err := hubPlots(res, *plots); err != nil {
			fmt.Fprintln(stderr, "e2e hub: plots:", err)
			return 1
		}
	}
	if *jsonOut != "" {
		b, err := json.MarshalIndent(res, "", " ")
		if err == nil {
			err = os.WriteFile(*jsonOut, b, 0o644)
		}
		if err != nil {
			fmt.Fprintln(stderr, "e2e hub: -json:", err)
			return 1
		}
	}
	return 0
}

// hubPlots writes one latency CDF per run: hub, Convene and raw.
func hubPlots(res *HubResults, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, r := range res.Runs {
		var series []cdfSeries
		for _, m := range []struct{ mode, name string }{{"hub", "y-websocket hub"}, {"convene", "Convene room"}, {"raw", "raw GossipSub"}} {
			if x := r.Modes[m.mode]; x != nil {
				series = append(series, cdfSeries{name: m.name, samples: x.Samples})
			}
		}
		name := fmt.Sprintf("hub-latency-cdf-n%d-p%d.png", r.N, r.Procs)
		title := fmt.Sprintf("Update → change event latency, N = %d, %s (loopback)", r.N, r.Layout)
		if err := plotCDFSeries(filepath.Join(dir, name), title, series); err != nil {
			return err
		}
	}
	return nil
}

// hubTableHeader is the first line of the report's main table.
const hubTableHeader = "| N | layout | figure | hub | Convene | raw GossipSub | Convene ÷ hub | Convene ÷ raw |"

func writeHubReport(w io.Writer, res *HubResults, command string) {
	m := res.Machine
	fmt.Fprintf(w, "Hub comparison, %s (%s); `%s`\n\n", res.Started.UTC().Format("2006-01-02 15:04 UTC"), res.Finished.Sub(res.Started).Round(time.Second), command)
	fmt.Fprintf(w, "Machine: %s, %d CPUs, %s %s/%s; load average before %s, after %s. Node %s; ", m.CPUModel, m.Cores, m.GoVersion, m.OS, m.Arch, m.LoadBefore, m.LoadAfter, res.Node)
	var vs []string
	for _, p := range []string{"@y/websocket-server", "y-websocket", "yjs", "y-protocols", "lib0", "ws"} {
		vs = append(vs, p+" "+res.Versions[p])
	}
	fmt.Fprintf(w, "%s.\n\n", strings.Join(vs, ", "))
	fmt.Fprintln(w, hubTableHeader)
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|")
	for _, r := range res.Runs {
		h, c, x := r.Modes["hub"], r.Modes["convene"], r.Modes["raw"]
		row := func(fig string, f func(*HubMode) (float64, bool), unit string) {
			hv, hok := f(h)
			cv, cok := f(c)
			xv, xok := f(x)
			fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s |\n", r.N, r.Layout, fig, fmtVal(hv, hok, unit), fmtVal(cv, cok, unit), fmtVal(xv, xok, unit), fmtRatio(cv, cok, hv, hok), fmtRatio(cv, cok, xv, xok))
		}
		lat := func(q func(Dist) float64) func(*HubMode) (float64, bool) {
			return func(m *HubMode) (float64, bool) {
				if m == nil || m.Lat.Count == 0 {
					return 0, false
				}
				return q(m.Lat), true
			}
		}
		row("latency p50", lat(func(d Dist) float64 { return d.P50 }), "ms")
		row("latency p99", lat(func(d Dist) float64 { return d.P99 }), "ms")
		row("delivery ratio", func(m *HubMode) (float64, bool) {
			if m == nil || m.Expected == 0 {
				return 0, false
			}
			return float64(m.Delivered) / float64(m.Expected), true
		}, "ratio")
		// per is a figure per delivery; a mode not run (nil: -raw=false)
		// or that delivered nothing has none.
		per := func(v func(*HubMode) float64) func(*HubMode) (float64, bool) {
			return func(m *HubMode) (float64, bool) {
				if m == nil || m.Delivered == 0 {
					return 0, false
				}
				return m.perDelivery(v(m)), true
			}
		}
		row("bytes per delivery", per(func(m *HubMode) float64 { return float64(m.Bytes) }), "B")
		row("bytes per delivery, background subtracted", per(func(m *HubMode) float64 { return m.BytesNet }), "B")
		row("CPU per delivery (all processes)", per(func(m *HubMode) float64 { return float64(m.CPU) / 1e3 }), "µs")
		side := func(fig string, f func(*HubSide) (float64, bool), unit string) {
			hv, hok := f(r.Sides["hub"])
			cv, cok := f(r.Sides["convene"])
			fmt.Fprintf(w, "| %d | %s | %s | %s | %s | – | %s | – |\n", r.N, r.Layout, fig, fmtVal(hv, hok, unit), fmtVal(cv, cok, unit), fmtRatio(cv, cok, hv, hok))
		}
		dq := func(get func(*HubSide) Dist, q func(Dist) float64) func(*HubSide) (float64, bool) {
			return func(s *HubSide) (float64, bool) {
				if s == nil || get(s).Count == 0 {
					return 0, false
				}
				return q(get(s)), true
			}
		}
		p50 := func(d Dist) float64 { return d.P50 }
		mx := func(d Dist) float64 { return d.Max }
		side("join: newcomer sees all, p50", dq(func(s *HubSide) Dist { return s.Join.FromConnect }, p50), "ms")
		side("join: newcomer sees all, max", dq(func(s *HubSide) Dist { return s.Join.FromConnect }, mx), "ms")
		side("join: every member sees newcomer, p50", dq(func(s *HubSide) Dist { return s.Join.MembersSee }, p50), "ms")
		side("leave: gone everywhere, p50", dq(func(s *HubSide) Dist { return s.Leave.Everywhere }, p50), "ms")
		side("leave: gone everywhere, max", dq(func(s *HubSide) Dist { return s.Leave.Everywhere }, mx), "ms")
		side("kill -9: gone everywhere, max", dq(func(s *HubSide) Dist { return s.Kill.Everywhere }, mx), "ms")
		side("SIGSTOP: gone everywhere, max", dq(func(s *HubSide) Dist { return s.Stop.Everywhere }, mx), "ms")
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Trials (complete / run; members that never dropped the node):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| N | layout | side | rounds per mode | lost rounds | join | leave | kill -9 | SIGSTOP | background B/s | background CPU |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---|---|---|---|---:|---:|")
	for _, r := range res.Runs {
		for _, name := range []string{"hub", "convene"} {
			s := r.Sides[name]
			if s == nil {
				continue
			}
			lost := r.Modes[name].Lost
			fmt.Fprintf(w, "| %d | %s | %s | %d | %d | %d/%d | %s | %s | %s | %.0f | %.3f cores |\n", r.N, r.Layout, name, r.Rounds, lost,
				s.Join.Complete, s.Join.Trials, detectCell(s.Leave), detectCell(s.Kill), detectCell(s.Stop), s.BgBytes, s.BgCPU)
		}
	}
	if len(res.Load) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "Load: %d nodes over 2 processes, each moving its cursor at %.0f Hz for %v (timer-paced, random phase):\n\n", res.Opts.LoadNodes, res.Opts.LoadHz, res.Opts.LoadDur)
		fmt.Fprintln(w, "| side | updates sent | change events | final values | all final values after | latency p50 | p99 | CPU per change event | bytes per change event | load avg |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
		for _, l := range res.Load {
			fmt.Fprintf(w, "| %s | %d | %d | %d/%d | %s | %s | %s | %s | %s | %s |\n", l.Side, l.Sent, l.Applied, l.FinalOK, l.FinalExpected,
				l.Converged.Round(time.Millisecond), fmtVal(l.Lat.P50, true, "ms"), fmtVal(l.Lat.P99, true, "ms"),
				fmtVal(float64(l.CPU)/1e3/float64(max(l.Applied, 1)), true, "µs"), fmtVal(float64(l.Bytes)/float64(max(l.Applied, 1)), true, "B"), l.LoadAv)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Targets (issue 14; Convene ÷ hub, same run):")
	fmt.Fprintln(w)
	for _, t := range hubTargets(res) {
		fmt.Fprintf(w, "- %s: %s — %s\n", t.name, t.measured, t.verdict)
	}
}

func detectCell(d HubDetect) string {
	if d.Trials == 0 {
		return "–"
	}
	return fmt.Sprintf("%d/%d, %d missing", d.Complete, d.Trials, d.Missing)
}

func fmtVal(v float64, ok bool, unit string) string {
	if !ok {
		return "–"
	}
	switch unit {
	case "ratio":
		return fmt.Sprintf("%.4f", v)
	case "ms":
		if v >= 1000 {
			return fmt.Sprintf("%.2f s", v/1000)
		}
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

func fmtRatio(a float64, aok bool, b float64, bok bool) string {
	if !aok || !bok || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// hubTargets checks issue 14's targets against the run.
func hubTargets(res *HubResults) []target {
	var out []target
	for _, r := range res.Runs {
		h, c := r.Modes["hub"], r.Modes["convene"]
		if h == nil || c == nil || h.Lat.Count == 0 || c.Lat.Count == 0 {
			continue
		}
		at := fmt.Sprintf("N=%d, %s", r.N, r.Layout)
		if r.N >= 10 {
			q := c.Lat.P50 / h.Lat.P50
			out = append(out, target{at + ": latency p50 ≤ 1× hub", fmt.Sprintf("%.2f vs %.2f ms (%.2f×)", c.Lat.P50, h.Lat.P50, q), verdict(q <= 1)})
			q = c.Lat.P99 / h.Lat.P99
			out = append(out, target{at + ": latency p99 ≤ 1.5× hub", fmt.Sprintf("%.2f vs %.2f ms (%.2f×)", c.Lat.P99, h.Lat.P99, q), verdict(q <= 1.5)})
		}
		cb, hb := c.perDelivery(float64(c.Bytes)), h.perDelivery(float64(h.Bytes))
		if hb > 0 {
			out = append(out, target{at + ": bytes per delivery ≤ 3× hub", fmt.Sprintf("%.0f vs %.0f B (%.2f×; background subtracted %.0f vs %.0f B)", cb, hb, cb/hb, c.perDelivery(c.BytesNet), h.perDelivery(h.BytesNet)), verdict(cb/hb <= 3)})
		}
		cc, hc := c.perDelivery(float64(c.CPU)/1e3), h.perDelivery(float64(h.CPU)/1e3)
		if hc > 0 {
			out = append(out, target{at + ": CPU per delivery ≤ 2.5× hub", fmt.Sprintf("%.0f vs %.0f µs (%.2f×)", cc, hc, cc/hc), verdict(cc/hc <= 2.5)})
		}
		if s := r.Sides["convene"]; s != nil && s.Stop.Trials > 0 {
			hs := r.Sides["hub"].Stop.Everywhere.Max
			out = append(out, target{at + ": SIGSTOP'd member dropped everywhere ≤ 5 s", fmt.Sprintf("%.1f s (hub %.1f s); %d/%d complete", s.Stop.Everywhere.Max/1e3, hs/1e3, s.Stop.Complete, s.Stop.Trials), verdict(s.Stop.Complete == s.Stop.Trials && s.Stop.Everywhere.Max <= 5000)})
		}
	}
	var hl, cl *HubLoad
	for k := range res.Load {
		if res.Load[k].Side == "hub" {
			hl = &res.Load[k]
		} else {
			cl = &res.Load[k]
		}
	}
	if hl != nil && cl != nil {
		at := fmt.Sprintf("load %d × %.0f Hz", cl.Nodes, cl.Hz)
		out = append(out, target{at + ": every final value delivered", fmt.Sprintf("Convene %d/%d, hub %d/%d", cl.FinalOK, cl.FinalExpected, hl.FinalOK, hl.FinalExpected), verdict(cl.FinalOK == cl.FinalExpected)})
		out = append(out, target{at + ": latency p50 ≤ hub's", fmt.Sprintf("%s vs %s", fmtVal(cl.Lat.P50, true, "ms"), fmtVal(hl.Lat.P50, true, "ms")), verdict(cl.Lat.P50 <= hl.Lat.P50)})
	}
	return out
}
