// Command e2e is Convene's end-to-end performance and load harness: it
// measures Convene rooms against raw GossipSub on the same libp2p hosts
// (loopback TCP, one process), in the same run, and writes a markdown report
// with latency CDF plots.
//
//	go run ./test/bench/e2e                 # N = 2,10,30,50, 10 s load run
//	go run ./test/bench/e2e -full           # the run documented in docs/BENCHMARKS.md
//	go run ./test/bench/e2e -n 2,10 -load-nodes 10 -rooms 100 -out /tmp/e2e.md -plots /tmp/img
//	go run ./test/bench/e2e hub -full       # Convene beside the y-websocket hub (hub.go)
//
// For each room size N it builds N hosts (each dials a few random others),
// then measures publish→apply latency, delivery ratio and bytes per
// delivered update for both stacks, join, leave and crash detection. Then a
// load run (50 peers moving cursors at 20 Hz) and 1000 rooms on one node.
// See docs/BENCHMARKS-e2e.md for the method and the latest figures.
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
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "hub" {
		return runHub(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		ns         = fs.String("n", "2,10,30,50", "room sizes to measure, comma-separated (empty: only the load and rooms runs)")
		full       = fs.Bool("full", false, "the full run: at least 30 latency rounds and 1000 updates per mode per N, 20 join/leave and 3 crash trials, 60 s load run, 30 s rooms window")
		loadDur    = fs.Duration("load-duration", 10*time.Second, "duration of the load run (60s with -full unless set)")
		loadNodes  = fs.Int("load-nodes", 50, "nodes in the load run (0 skips it)")
		loadHz     = fs.Float64("load-hz", 20, "cursor updates per second per node in the load run")
		loadHzAlt  = fs.Float64("load-hz-alt", 2, "repeat the load run at this rate, one the machine can carry (0 skips it)")
		rooms      = fs.Int("rooms", 1000, "rooms joined by one node in the many-rooms run (0 skips it)")
		out        = fs.String("out", "docs/BENCHMARKS-e2e.md", "markdown report to write (empty: none)")
		plots      = fs.String("plots", "docs/img", "directory for the latency CDF plots")
		seed       = fs.Uint64("seed", 1, "seed of the random graphs and choices")
		degree     = fs.Int("degree", 3, "how many others each host dials")
		rate       = fs.Float64("rate", 50, "updates per second over the whole room in the latency run")
		cycles     = fs.Int("cycles", -1, "latency rounds per mode (default 10, or 30 with -full)")
		minSamples = fs.Int("min-samples", -1, "at least this many updates (latency samples at N=2) per mode per N: max(cycles, ceil(min-samples/N)) rounds (default 100, or 1000 with -full; 0: cycles only)")
		trials     = fs.Int("trials", -1, "join and leave trials per N (default 10, or 20 with -full; 0 skips them)")
		crash      = fs.Int("crash-trials", -1, "crash trials per N (default 1, or 3 with -full; 0 skips them)")
		timeout    = fs.Duration("timeout", 0, "room Timeout (0: room.DefaultConfig, 30s; heartbeat Timeout/3)")
		jsonOut    = fs.String("json", "", "also write the raw results (samples included) as JSON to this file")
		render     = fs.String("render", "", "do not run: re-render the report and plots from a -json file")
		cpuprofile = fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
		memprofile = fs.String("memprofile", "", "write a heap profile at the end of the run to this file")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	o := DefaultOptions()
	if *full {
		o = FullOptions()
	}
	var err error
	if o.Ns, err = parseNs(*ns); err != nil {
		fmt.Fprintln(stderr, "e2e:", err)
		return 2
	}
	if set["load-duration"] || !*full {
		o.LoadDuration = *loadDur
	}
	o.LoadNodes, o.LoadHz, o.LoadHzAlt, o.Rooms = *loadNodes, *loadHz, *loadHzAlt, *rooms
	o.Seed, o.Degree, o.Rate = *seed, *degree, *rate
	if *cycles > 0 {
		o.Cycles = *cycles
	}
	if *minSamples >= 0 {
		o.MinSamples = *minSamples
	}
	if *trials >= 0 {
		o.LeaveTrials, o.JoinTrials = *trials, *trials
	}
	if *crash >= 0 {
		o.CrashTrials = *crash
	}
	if *timeout > 0 {
		o.Room.Timeout = *timeout
	}
	if o.Degree < 1 || o.Rate <= 0 || o.LoadHz <= 0 || o.LoadDuration <= 0 {
		fmt.Fprintln(stderr, "e2e: -degree, -rate, -load-hz and -load-duration must be positive")
		return 2
	}
	o.Progress = stderr

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(stderr, "e2e:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "e2e:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	command := "go run ./test/bench/e2e"
	if len(args) > 0 {
		command += " " + strings.Join(args, " ")
	}
	var res *Results
	if *render != "" {
		b, err := os.ReadFile(*render)
		if err == nil {
			var saved savedRun
			if err = json.Unmarshal(b, &saved); err == nil {
				res, command = saved.Results, saved.Command
			}
		}
		if err != nil || res == nil {
			fmt.Fprintf(stderr, "e2e: -render %s: %v\n", *render, err)
			return 1
		}
	} else {
		var err error
		if res, err = Run(ctx, o); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	if *out != "" {
		if err := WriteOutputs(res, command, *out, *plots); err != nil {
			fmt.Fprintln(stderr, "e2e:", err)
			return 1
		}
		fmt.Fprintf(stdout, "wrote %s and plots in %s\n", *out, *plots)
	}
	if *jsonOut != "" {
		b, err := json.Marshal(savedRun{Command: command, Results: res})
		if err == nil {
			err = os.WriteFile(*jsonOut, b, 0o644)
		}
		if err != nil {
			fmt.Fprintln(stderr, "e2e: -json:", err)
		}
	}
	if *memprofile != "" {
		if err := writeHeapProfile(*memprofile); err != nil {
			fmt.Fprintln(stderr, "e2e:", err)
			return 1
		}
	}

	for _, t := range targets(res) {
		fmt.Fprintf(stdout, "%-70s %-12s %s\n", t.name, strings.Trim(t.verdict, "*"), t.measured)
	}
	return 0
}

// savedRun is what -json writes and -render reads.
type savedRun struct {
	Command string
	Results *Results
}

func parseNs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 2 || n > 1000 {
			return nil, fmt.Errorf("bad room size %q in -n (want integers from 2 to 1000)", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	return pprof.WriteHeapProfile(f)
}
