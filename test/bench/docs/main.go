// Command docs is Convene's documents benchmark: the same workloads through
// Convene's doc.Handle (automerge-go, Rust automerge 0.5.0) and through
// @automerge/automerge (JS, wasm), in one run, with ratios.
//
//	go run ./test/bench/docs [-runs 5] [-changes 10000] [-durable 300] [-js=true]
//
// Workloads (identical on both sides; the median of -runs runs, each on fresh
// documents, is reported):
//   - map edit: one change per write of key k<i mod 100> = i, committed;
//   - typing: one change per character appended to a text (letters from a
//     fixed pseudo-random sequence, the same on both sides);
//   - save / load of the typing document (-changes changes): Save(), and
//     opening it again (Go: doc.Open from a store holding its snapshot; JS:
//     A.load);
//   - storage after compaction (Go only; the JS column is its save() size):
//     the typing document written to bbolt with a Flush every 100 changes;
//   - durable saves: -durable map edits, each made durable before the next
//     (Go: Flush to bbolt, two fsyncs per transaction; JS: saveIncremental
//     appended to a file and fsynced); debounced (Go only): -changes map edits
//     with the default 100 ms save debounce, then one Flush.
//
// The JS side needs node and npm (npm ci runs if node_modules is missing).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/automerge/automerge-go"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/storage"
)

type options struct {
	runs, changes, durable int
	js                     bool
	dir                    string // for the stores and files written
}

func main() {
	var o options
	flag.IntVar(&o.runs, "runs", 5, "runs per workload (the median is reported)")
	flag.IntVar(&o.changes, "changes", 10000, "changes per workload (and of the saved/loaded document)")
	flag.IntVar(&o.durable, "durable", 300, "changes of the durable-save workload")
	flag.BoolVar(&o.js, "js", true, "run the Automerge JS side (needs node and npm)")
	flag.Parse()
	dir, err := os.MkdirTemp("", "convene-bench-docs-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	o.dir = dir
	if err := run(o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "docs:", err)
		os.Exit(1)
	}
}

// goResult is the Go side's figures (ns and bytes).
type goResult struct {
	MapEdit, Typing       float64 // ns per change
	Save, Load, RawLoad   float64 // ns; RawLoad: automerge.Load alone
	SaveBytes             int
	StoredBytes, FileSize int     // at the end: chunk bytes in the store, the bbolt file
	StoredSave            int     // that document's Save size
	MaxRatio              float64 // the most stored/Save seen after any flush
	Compactions           int     // flushes after which the store held one snapshot only
	Durable, Debounced    float64
}

// jsResult is what bench.mjs prints.
type jsResult struct {
	Node     string            `json:"node"`
	Versions map[string]string `json:"versions"`
	MapEdit  struct {
		NsPerChange float64 `json:"nsPerChange"`
	} `json:"mapEdit"`
	Typing struct {
		NsPerChange float64 `json:"nsPerChange"`
	} `json:"typing"`
	Save struct {
		Ns    float64 `json:"ns"`
		Bytes int     `json:"bytes"`
	} `json:"save"`
	Load struct {
		Ns float64 `json:"ns"`
	} `json:"load"`
	Durable struct {
		NsPerChange float64 `json:"nsPerChange"`
	} `json:"durable"`
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// timeRuns runs fn o.runs times and returns the median duration in ns.
func timeRuns(o options, fn func() error) (float64, error) {
	var ns []float64
	for range o.runs {
		runtime.GC()
		t0 := time.Now()
		if err := fn(); err != nil {
			return 0, err
		}
		ns = append(ns, float64(time.Since(t0).Nanoseconds()))
	}
	return median(ns), nil
}

func mapEdits(h *doc.Handle, n int) error {
	for i := range n {
		if err := h.Change(func(tx *doc.Tx) error { return tx.Set(doc.Path{fmt.Sprint("k", i%100)}, i) }); err != nil {
			return err
		}
	}
	v, _, err := h.Get(doc.Path{fmt.Sprint("k", (n-1)%100)})
	if err != nil || v != int64(n-1) {
		return fmt.Errorf("map edits: final value %v %v", v, err)
	}
	return nil
}

func typing(h *doc.Handle, n int, every func(i int) error) error {
	if err := h.Change(func(tx *doc.Tx) error { return tx.Set(doc.Path{"t"}, doc.Text("")) }); err != nil {
		return err
	}
	x := uint32(1)
	for i := range n {
		x = (x*1103515245 + 12345) & 0x7fffffff // the same generator as bench.mjs
		c := string(rune('a' + (x>>16)%26))
		if err := h.Change(func(tx *doc.Tx) error { return tx.Splice(doc.Path{"t"}, i, 0, c) }); err != nil {
			return err
		}
		if every != nil {
			if err := every(i); err != nil {
				return err
			}
		}
	}
	v, _, err := h.Get(doc.Path{"t"})
	if s, _ := v.(string); err != nil || len(s) != n {
		return fmt.Errorf("typing: text of %d characters, want %d (%v)", len(s), n, err)
	}
	return nil
}

func open(ctx context.Context, opts doc.Options) (*doc.Handle, error) {
	return doc.Open(ctx, "bench", opts)
}

func runGo(o options) (goResult, error) {
	ctx := context.Background()
	var r goResult
	var err error
	if r.MapEdit, err = timeRuns(o, func() error {
		h, err := open(ctx, doc.Options{})
		if err != nil {
			return err
		}
		defer h.Close(ctx)
		return mapEdits(h, o.changes)
	}); err != nil {
		return r, err
	}
	r.MapEdit /= float64(o.changes)
	var last *doc.Handle
	if r.Typing, err = timeRuns(o, func() error {
		h, err := open(ctx, doc.Options{})
		if err != nil {
			return err
		}
		if last != nil {
			last.Close(ctx)
		}
		last = h
		return typing(h, o.changes, nil)
	}); err != nil {
		return r, err
	}
	defer last.Close(ctx)
	r.Typing /= float64(o.changes)

	var saved []byte
	if r.Save, err = timeRuns(o, func() error { saved = last.Save(); return nil }); err != nil {
		return r, err
	}
	r.SaveBytes = len(saved)
	mem := storage.NewMemory()
	if err := mem.Save(ctx, storage.Key{"doc", "bench", "snapshot", "x"}, saved); err != nil {
		return r, err
	}
	if r.Load, err = timeRuns(o, func() error {
		h, err := open(ctx, doc.Options{Storage: mem})
		if err != nil {
			return err
		}
		defer h.Close(ctx)
		if !h.Heads().Equal(last.Heads()) {
			return errors.New("load: different heads")
		}
		return nil
	}); err != nil {
		return r, err
	}

	if r.RawLoad, err = timeRuns(o, func() error {
		_, err := automerge.Load(saved)
		return err
	}); err != nil {
		return r, err
	}

	// Storage after compaction: the typing document flushed every 100 changes.
	path := filepath.Join(o.dir, "compaction.bolt")
	st, err := storage.OpenBolt(path, storage.BoltOptions{})
	if err != nil {
		return r, err
	}
	h, err := open(ctx, doc.Options{Storage: st})
	if err != nil {
		return r, err
	}
	stored := func() (int, int, error) {
		chunks, err := st.LoadRange(ctx, storage.Key{"doc", "bench"})
		n := 0
		for _, c := range chunks {
			n += len(c.Data)
		}
		return n, len(chunks), err
	}
	if err := typing(h, o.changes, func(i int) error {
		if i%100 != 99 {
			return nil
		}
		if err := h.Flush(ctx); err != nil {
			return err
		}
		n, k, err := stored()
		if k == 1 {
			r.Compactions++
		}
		r.MaxRatio = max(r.MaxRatio, float64(n)/float64(len(h.Save())))
		return err
	}); err != nil {
		return r, err
	}
	if err := h.Flush(ctx); err != nil {
		return r, err
	}
	if r.StoredBytes, _, err = stored(); err != nil {
		return r, err
	}
	r.StoredSave = len(h.Save())
	if err := h.Close(ctx); err != nil {
		return r, err
	}
	_ = st.Close()
	if fi, err := os.Stat(path); err == nil {
		r.FileSize = int(fi.Size())
	}

	// Durable saves.
	durable := func(flushEach bool, n int) (float64, error) {
		i := 0
		ns, err := timeRuns(o, func() error {
			i++
			st, err := storage.OpenBolt(filepath.Join(o.dir, fmt.Sprintf("durable-%v-%d.bolt", flushEach, i)), storage.BoltOptions{})
			if err != nil {
				return err
			}
			defer st.Close()
			h, err := open(ctx, doc.Options{Storage: st})
			if err != nil {
				return err
			}
			for j := range n {
				if err := h.Change(func(tx *doc.Tx) error { return tx.Set(doc.Path{fmt.Sprint("k", j%100)}, j) }); err != nil {
					return err
				}
				if flushEach {
					if err := h.Flush(ctx); err != nil {
						return err
					}
				}
			}
			if err := h.Flush(ctx); err != nil {
				return err
			}
			return h.Close(ctx)
		})
		return ns / float64(n), err
	}
	if r.Durable, err = durable(true, o.durable); err != nil {
		return r, err
	}
	if r.Debounced, err = durable(false, o.changes); err != nil {
		return r, err
	}
	return r, nil
}

// runJS runs bench.mjs beside this file (npm ci first if needed).
func runJS(o options, progress io.Writer) (*jsResult, error) {
	dir, err := benchDir()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@automerge", "automerge", "package.json")); err != nil {
		fmt.Fprintln(progress, "docs: node_modules missing, running npm ci")
		cmd := exec.Command("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
		cmd.Dir, cmd.Stdout, cmd.Stderr = dir, progress, progress
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("npm ci: %w", err)
		}
	}
	cmd := exec.Command("node", "--expose-gc", "bench.mjs", "--runs", fmt.Sprint(o.runs),
		"--changes", fmt.Sprint(o.changes), "--durable", fmt.Sprint(o.durable), "--dir", o.dir)
	cmd.Dir, cmd.Stderr = dir, progress
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("node bench.mjs: %w", err)
	}
	var res jsResult
	if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
		return nil, fmt.Errorf("bench.mjs output: %w", err)
	}
	return &res, nil
}

// benchDir is this package's directory (bench.mjs, package.json).
func benchDir() (string, error) {
	for _, d := range []string{".", "test/bench/docs"} {
		if _, err := os.Stat(filepath.Join(d, "bench.mjs")); err == nil {
			return filepath.Abs(d)
		}
	}
	return "", errors.New("bench.mjs not found: run from the repository root or test/bench/docs")
}

func run(o options, out, progress io.Writer) error {
	g, err := runGo(o)
	if err != nil {
		return err
	}
	var js *jsResult
	if o.js {
		if js, err = runJS(o, progress); err != nil {
			return err
		}
	}
	report(out, o, g, js)
	return nil
}

const tableHeader = "| workload | Convene (doc.Handle) | Automerge JS | ratio | target |"

func report(w io.Writer, o options, g goResult, js *jsResult) {
	fmt.Fprintf(w, "Documents benchmark: %d changes per workload, %d durable, median of %d runs; %s %s/%s, %d CPUs\n",
		o.changes, o.durable, o.runs, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	if js != nil {
		fmt.Fprintf(w, "JS: node %s, @automerge/automerge %s\n", js.Node, js.Versions["@automerge/automerge"])
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, tableHeader)
	fmt.Fprintln(w, "|---|---|---|---|---|")
	rate := func(ns float64) string { return fmt.Sprintf("%.0f changes/s", 1e9/ns) }
	ms := func(ns float64) string { return fmt.Sprintf("%.2f ms", ns/1e6) }
	row := func(name, goV, jsV, ratio, target string) {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", name, goV, jsV, ratio, target)
	}
	jsOr := func(f func(*jsResult) string) string {
		if js == nil {
			return "–"
		}
		return f(js)
	}
	// Ratios are "Convene's advantage": > 1 means Convene is faster.
	speed := func(goNs float64, jsNs func(*jsResult) float64) string {
		return jsOr(func(j *jsResult) string { return fmt.Sprintf("%.2f×", jsNs(j)/goNs) })
	}
	row("change+commit, map edit", rate(g.MapEdit), jsOr(func(j *jsResult) string { return rate(j.MapEdit.NsPerChange) }),
		speed(g.MapEdit, func(j *jsResult) float64 { return j.MapEdit.NsPerChange }), "≥ 1× (rate)")
	row("change+commit, typing (1 char per change)", rate(g.Typing), jsOr(func(j *jsResult) string { return rate(j.Typing.NsPerChange) }),
		speed(g.Typing, func(j *jsResult) float64 { return j.Typing.NsPerChange }), "≥ 1× (rate)")
	row(fmt.Sprintf("save, %d-change doc", o.changes), fmt.Sprintf("%s, %d B", ms(g.Save), g.SaveBytes),
		jsOr(func(j *jsResult) string { return fmt.Sprintf("%s, %d B", ms(j.Save.Ns), j.Save.Bytes) }),
		speed(g.Save, func(j *jsResult) float64 { return j.Save.Ns }), "–")
	row(fmt.Sprintf("load, %d-change doc", o.changes), ms(g.Load), jsOr(func(j *jsResult) string { return ms(j.Load.Ns) }),
		jsOr(func(j *jsResult) string { return fmt.Sprintf("time %.2f×", g.Load/j.Load.Ns) }), "time ≤ 1×")
	row("  of which automerge-go's Load alone", ms(g.RawLoad), "–",
		jsOr(func(j *jsResult) string { return fmt.Sprintf("time %.2f×", g.RawLoad/j.Load.Ns) }), "–")
	row("stored, typing doc flushed every 100 changes", fmt.Sprintf("end: %d B in chunks, %.2f× its Save (bbolt file %d B); 1.00× right after each of %d compactions, at most %.2f× between them", g.StoredBytes, float64(g.StoredBytes)/float64(g.StoredSave), g.FileSize, g.Compactions, g.MaxRatio),
		jsOr(func(j *jsResult) string { return fmt.Sprintf("save() %d B", j.Save.Bytes) }),
		fmt.Sprintf("%.2f× own Save at most", g.MaxRatio), "≤ 1.5× Save after compaction")
	row("durable save after each change", rate(g.Durable), jsOr(func(j *jsResult) string { return rate(j.Durable.NsPerChange) + " (saveIncremental + fsync)" }),
		speed(g.Durable, func(j *jsResult) float64 { return j.Durable.NsPerChange }), "–")
	row("debounced saves (100 ms), then Flush", rate(g.Debounced), "–", "–", "–")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Ratios are Automerge JS time / Convene time for rates (> 1: Convene faster), Convene / JS for load time.")
}
