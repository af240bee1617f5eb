// Command compare benchmarks Convene's presence store (ephemeral.Store, in-process) against Loro's
// EphemeralStore (npm loro-crdt) and Yjs awareness (npm y-protocols + yjs) on one workload, a
// peer whose state is {cursor:{x,y}, name:"alice"} moving its cursor, and prints one Markdown
// table with the ratios and the performance targets of DESIGN.md.
//
// From the repository root:
//
//	go run ./test/bench/compare             # Go and JS sides (runs npm ci first if node_modules is missing)
//	go run ./test/bench/compare -js=false   # Convene only
//
// See README.md beside this file for what is measured and how Loro's timestamps are handled.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	settings
	rounds   int
	sizes    []int
	epoch    uint64 // Convene's epoch; 0 means unix ms now, as a real peer would use
	js       bool
	dir      string
	jsonPath string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.rounds, "rounds", 1, "times to run both sides, alternating; each figure is the median of all rounds' runs")
	fs.IntVar(&o.runs, "runs", 5, "timed runs per figure and round (the median is reported)")
	fs.DurationVar(&o.minTime, "mintime", 500*time.Millisecond, "minimum duration of one timed run")
	sizes := fs.String("sizes", "100,1000", "peer counts of the snapshot measurements")
	fs.BoolVar(&o.js, "js", true, "also run the JS side (node bench.mjs; needs node and npm)")
	fs.StringVar(&o.dir, "dir", "", "folder holding bench.mjs (default: found automatically)")
	fs.StringVar(&o.jsonPath, "json", "", "also write every figure as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("compare: unexpected arguments %q", fs.Args())
	}
	if o.rounds < 1 || o.runs < 1 || o.minTime <= 0 {
		return o, errors.New("compare: -rounds and -runs must be >= 1 and -mintime > 0")
	}
	for s := range strings.SplitSeq(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return o, fmt.Errorf("compare: bad -sizes entry %q", s)
		}
		o.sizes = append(o.sizes, n)
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	rep, err := compare(o, stderr)
	if err != nil {
		return err
	}
	rep.Command = "go run ./test/bench/compare"
	if len(args) > 0 {
		rep.Command += " " + strings.Join(args, " ")
	}
	writeReport(stdout, rep)
	if o.jsonPath != "" {
		clean := *rep
		clean.Rows = make([]row, len(rep.Rows))
		for i, r := range rep.Rows {
			clean.Rows[i] = r.clean()
		}
		b, err := json.MarshalIndent(&clean, "", " ")
		if err != nil {
			return fmt.Errorf("compare: %w", err)
		}
		if err := os.WriteFile(o.jsonPath, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("compare: %w", err)
		}
	}
	return nil
}

// compare runs both sides -rounds times, alternating (Go, JS, Go, JS, ...) so that a change in
// the machine's load falls on both, and builds the report from all the runs of all the rounds;
// progress gets what the sides print on the way.
func compare(o options, progress io.Writer) (*report, error) {
	rep := &report{Machine: machineInfo(), Rounds: o.rounds, Runs: o.runs, MinTime: o.minTime.String(), Sizes: o.sizes}
	epoch := o.epoch
	if epoch == 0 {
		epoch = uint64(time.Now().UnixMilli())
	}
	dir := ""
	if o.js {
		var err error
		if dir, err = benchDir(o.dir); err != nil {
			return nil, err
		}
	} else {
		rep.JSReason = "-js=false"
	}
	for round := 1; round <= o.rounds; round++ {
		fmt.Fprintf(progress, "compare: round %d/%d: measuring Convene (Go, in-process)\n", round, o.rounds)
		c, err := runConvene(o.settings, epoch, o.sizes)
		if err != nil {
			return nil, err
		}
		rep.Convene = mergeConvene(rep.Convene, c)
		if !o.js {
			continue
		}
		fmt.Fprintf(progress, "compare: round %d/%d: measuring Loro and Yjs (node bench.mjs in %s)\n", round, o.rounds, dir)
		js, err := runJS(dir, o.settings, o.sizes, progress)
		if err != nil {
			return nil, err
		}
		rep.JS = mergeJS(rep.JS, js)
	}
	rep.Rows = buildRows(rep.Convene, rep.JS, o.sizes)
	return rep, nil
}
