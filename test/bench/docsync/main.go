// Command docsync benchmarks document sync between peers: Convene (repo.Repo
// with docsync over libp2p, loopback TCP) against automerge-repo 2.5.6
// (@automerge/automerge-repo with its WebSocket network adapter, Node), on
// the same workloads in one run, alternating, and prints a Markdown table of
// the figures and the ratios Convene ÷ automerge-repo against the targets of
// issue 11.
//
//	go run ./test/bench/docsync [-rounds 3] [-js=true]
//
// Every peer is its own process, driven over stdin/stdout (one JSON request
// and reply per line; the protocol is in peer.mjs): the Convene peers are
// this binary started again with CONVENE_DOCSYNC_PEER=1, the automerge-repo
// peers `node peer.mjs` (npm ci runs first if node_modules is missing; the
// installed versions are checked against package.json). Of each pair, b
// reaches a through a loopback TCP proxy of this command that counts the
// bytes on the wire both ways. Send and receive times are CLOCK_MONOTONIC,
// read by each peer process itself.
//
// A small edit is one change setting n_<key> = i and appending one letter to
// the shared text t. Workloads (see workloads.go):
//   - latency: a makes small edits at 10 and 100 changes/s; the time from
//     each change on a to the change event on b (p50, p99);
//   - initial fetch: a holds a 10 000-change document; b, a new peer,
//     connects and asks for it by ID: the time from the connect request
//     until b holds all of it, and the bytes on the wire meanwhile;
//   - convergence: a and b, apart, make 1 000 small edits each to a document
//     they both had; then b connects again: the time until both hold
//     everything;
//   - N peers (Convene only): 10 peers, each connected to every other, each
//     making small edits to one document at 10 changes/s: delivery to all,
//     latency, and CPU (getrusage) per change per peer.
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

type options struct {
	rounds      int
	rates       []float64
	latN        []int // changes measured per rate
	warm        int   // changes before the measured ones (connection and sync set up)
	fetch       int
	offline     int
	meshN       int
	meshK       int
	meshRate    float64
	timeout     time.Duration
	js          bool
	progress    io.Writer
	skipMesh    bool
	skipConvene bool
	announceAB  bool
}

func defaults() options {
	return options{
		rounds: 3, rates: []float64{10, 100}, latN: []int{100, 500}, warm: 10,
		fetch: 10000, offline: 1000, meshN: 10, meshK: 100, meshRate: 10,
		timeout: 60 * time.Second, js: true,
	}
}

func main() {
	o := defaults()
	flag.IntVar(&o.rounds, "rounds", o.rounds, "rounds; each runs every workload on both sides, alternating which goes first")
	flag.IntVar(&o.latN[0], "lat10", o.latN[0], "changes measured at 10 changes/s per round")
	flag.IntVar(&o.latN[1], "lat100", o.latN[1], "changes measured at 100 changes/s per round")
	flag.IntVar(&o.fetch, "fetch", o.fetch, "changes of the document a new peer fetches")
	flag.IntVar(&o.offline, "offline", o.offline, "offline changes on each of the two peers")
	flag.IntVar(&o.meshN, "n", o.meshN, "peers of the N-peer workload (Convene)")
	flag.IntVar(&o.meshK, "k", o.meshK, "changes per peer of the N-peer workload")
	flag.DurationVar(&o.timeout, "timeout", o.timeout, "longest wait for a delivery")
	flag.BoolVar(&o.js, "js", o.js, "run the automerge-repo side (needs node and npm)")
	convene := flag.Bool("convene", true, "run the Convene side")
	flag.BoolVar(&o.skipMesh, "nomesh", false, "skip the N-peer workload")
	flag.BoolVar(&o.announceAB, "announceab", false, "run the N-peer workload also with head announcements off, alternating, and report on ÷ off")
	flag.Parse()
	o.skipConvene = !*convene
	o.progress = os.Stderr
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "docsync:", err)
		os.Exit(1)
	}
}

// sideFigures are one side's figures, pooled over the rounds.
type sideFigures struct {
	Lat             map[float64][]float64 // rate -> latencies (ns)
	FetchNs, FetchB []float64
	FetchSave       int
	ConvNs, ConvB   []float64
	MeshRan         bool
	Mesh            meshResult
}

func run(o options, out io.Writer) error {
	var sides []side
	var info *jsInfo
	if !o.skipConvene {
		sides = append(sides, goSide())
	}
	if o.js {
		dir, i, err := prepareJS(o.progress)
		if err != nil {
			return err
		}
		info = i
		sides = append(sides, jsSide(dir))
	}
	figs := map[string]*sideFigures{}
	for _, s := range sides {
		figs[s.name] = &sideFigures{Lat: map[float64][]float64{}}
	}
	logf := func(format string, args ...any) {
		if o.progress != nil {
			fmt.Fprintf(o.progress, "docsync: "+format+"\n", args...)
		}
	}
	for r := range o.rounds {
		order := slices.Clone(sides)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for i, rate := range o.rates {
			for _, s := range order {
				logf("round %d: %s latency at %v changes/s", r+1, s.name, rate)
				lat, err := latencyRun(s, o, rate, o.latN[i], o.warm)
				if err != nil {
					return fmt.Errorf("%s latency at %v/s: %w", s.name, rate, err)
				}
				figs[s.name].Lat[rate] = append(figs[s.name].Lat[rate], lat...)
			}
		}
		for _, s := range order {
			logf("round %d: %s initial fetch of a %d-change document", r+1, s.name, o.fetch)
			ns, b, save, err := fetchRun(s, o, o.fetch)
			if err != nil {
				return fmt.Errorf("%s initial fetch: %w", s.name, err)
			}
			f := figs[s.name]
			f.FetchNs, f.FetchB, f.FetchSave = append(f.FetchNs, ns), append(f.FetchB, b), save
		}
		for _, s := range order {
			logf("round %d: %s convergence after %d offline changes each", r+1, s.name, o.offline)
			ns, b, err := convergeRun(s, o, o.offline)
			if err != nil {
				return fmt.Errorf("%s convergence: %w", s.name, err)
			}
			f := figs[s.name]
			f.ConvNs, f.ConvB = append(f.ConvNs, ns), append(f.ConvB, b)
		}
		if !o.skipConvene && !o.skipMesh {
			mesh := []side{goSide()}
			if o.announceAB {
				mesh = append(mesh, goSideWith(false))
				if r%2 == 1 {
					slices.Reverse(mesh)
				}
			}
			for _, s := range mesh {
				logf("round %d: %s, %d peers × %d changes at %v changes/s", r+1, s.name, o.meshN, o.meshK, o.meshRate)
				m, err := meshRun(s, o, o.meshN, o.meshK, o.warm, o.meshRate)
				if err != nil {
					return fmt.Errorf("%s %d peers: %w", s.name, o.meshN, err)
				}
				f := figs[s.name]
				if f == nil {
					f = &sideFigures{Lat: map[float64][]float64{}}
					figs[s.name] = f
				}
				f.MeshRan = true
				f.Mesh.Delivered += m.Delivered
				f.Mesh.Expected += m.Expected
				f.Mesh.Lat = append(f.Mesh.Lat, m.Lat...)
				f.Mesh.CPU = append(f.Mesh.CPU, m.CPU...)
			}
		}
	}
	report(out, o, info, figs)
	return nil
}

// quantile is the nearest-rank q-quantile of xs.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func median(xs []float64) float64 { return quantile(xs, 0.5) }

// Header of the main table (the smoke test looks for it).
const tableHeader = "| workload | Convene | automerge-repo | Convene ÷ automerge-repo | target | met |"

func report(w io.Writer, o options, info *jsInfo, figs map[string]*sideFigures) {
	host, _ := os.Hostname()
	fmt.Fprintf(w, "Document sync benchmark, %s UTC; %d rounds (both sides each round, alternating which goes first); %s %s/%s, %d CPUs (%s), host %s, load average %s\n",
		time.Now().UTC().Format("2006-01-02 15:04"), o.rounds, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel(), host, loadAvg())
	if info != nil {
		var vs []string
		for _, p := range jsPinned {
			vs = append(vs, p+" "+info.Versions[p])
		}
		fmt.Fprintf(w, "automerge-repo side: node %s, %s; default Repo settings (announce to every peer, 100 ms sync throttle), no storage\n", info.Node, strings.Join(vs, ", "))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, tableHeader)
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	g, j := figs["Convene"], figs["automerge-repo"]
	val := func(f *sideFigures, get func(*sideFigures) float64, unit func(float64) string) string {
		if f == nil {
			return "–"
		}
		return unit(get(f))
	}
	ratio := func(get func(*sideFigures) float64, target float64) (string, string) {
		if g == nil || j == nil {
			return "–", "–"
		}
		r := get(g) / get(j)
		met := "–"
		if target > 0 {
			met = "yes"
			if r > target {
				met = "**no**"
			}
		}
		return fmt.Sprintf("%.2f×", r), met
	}
	ms := func(ns float64) string { return fmt.Sprintf("%.2f ms", ns/1e6) }
	kb := func(b float64) string { return fmt.Sprintf("%.0f B", b) }
	row := func(name string, get func(*sideFigures) float64, unit func(float64) string, target float64) {
		r, met := ratio(get, target)
		t := "–"
		if target > 0 {
			t = fmt.Sprintf("≤ %g×", target)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", name, val(g, get, unit), val(j, get, unit), r, t, met)
	}
	for i, rate := range o.rates {
		n := o.latN[i] * o.rounds
		row(fmt.Sprintf("latency p50, %g changes/s (%d changes)", rate, n), func(f *sideFigures) float64 { return quantile(f.Lat[rate], 0.5) }, ms, 1)
		row(fmt.Sprintf("latency p99, %g changes/s", rate), func(f *sideFigures) float64 { return quantile(f.Lat[rate], 0.99) }, ms, 0)
	}
	row(fmt.Sprintf("initial fetch, %d-change doc: time (median)", o.fetch), func(f *sideFigures) float64 { return median(f.FetchNs) }, ms, 0)
	row("initial fetch: bytes on the wire, both ways (median)", func(f *sideFigures) float64 { return median(f.FetchB) }, kb, 1)
	row("  the document's Save() size", func(f *sideFigures) float64 { return float64(f.FetchSave) }, kb, 0)
	row(fmt.Sprintf("convergence, %d + %d offline changes: time (median)", o.offline, o.offline), func(f *sideFigures) float64 { return median(f.ConvNs) }, ms, 1)
	row("convergence: bytes on the wire, both ways (median)", func(f *sideFigures) float64 { return median(f.ConvB) }, kb, 0)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Per round (Convene / automerge-repo):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| round | fetch time | fetch bytes | convergence time |")
	fmt.Fprintln(w, "|---|---|---|---|")
	pair := func(f *sideFigures, xs func(*sideFigures) []float64, i int, unit func(float64) string) string {
		if f == nil || i >= len(xs(f)) {
			return "–"
		}
		return unit(xs(f)[i])
	}
	for i := range o.rounds {
		fmt.Fprintf(w, "| %d | %s / %s | %s / %s | %s / %s |\n", i+1,
			pair(g, func(f *sideFigures) []float64 { return f.FetchNs }, i, ms), pair(j, func(f *sideFigures) []float64 { return f.FetchNs }, i, ms),
			pair(g, func(f *sideFigures) []float64 { return f.FetchB }, i, kb), pair(j, func(f *sideFigures) []float64 { return f.FetchB }, i, kb),
			pair(g, func(f *sideFigures) []float64 { return f.ConvNs }, i, ms), pair(j, func(f *sideFigures) []float64 { return f.ConvNs }, i, ms))
	}
	if g != nil && g.MeshRan {
		m := g.Mesh
		fmt.Fprintln(w)
		fmt.Fprintf(w, "Convene, %d peers (full mesh), one document, each peer %d changes at %g changes/s at once (after %d warm-up changes each), %d rounds:\n\n",
			o.meshN, o.meshK, o.meshRate, o.warm, o.rounds)
		fmt.Fprintln(w, "| N-peer figure | value |")
		fmt.Fprintln(w, "|---|---|")
		fmt.Fprintf(w, "| delivered to every other peer | %d of %d (%.2f %%) |\n", m.Delivered, m.Expected, 100*float64(m.Delivered)/float64(max(m.Expected, 1)))
		fmt.Fprintf(w, "| latency p50 / p99 | %s / %s |\n", ms(quantile(m.Lat, 0.5)), ms(quantile(m.Lat, 0.99)))
		fmt.Fprintf(w, "| CPU per change per peer (getrusage), median / max over peers and rounds | %.1f µs / %.1f µs |\n", median(m.CPU)/1e3, quantile(m.CPU, 1)/1e3)
	}
	if off := figs["Convene, announcements off"]; g != nil && g.MeshRan && off != nil && off.MeshRan {
		on, of := g.Mesh, off.Mesh
		fmt.Fprintln(w)
		fmt.Fprintf(w, "The same N-peer workload with head announcements on (the default) and off, alternating, same run:\n\n")
		fmt.Fprintln(w, "| N-peer figure | on | off | on ÷ off |")
		fmt.Fprintln(w, "|---|---|---|---|")
		fmt.Fprintf(w, "| delivered | %d of %d | %d of %d | |\n", on.Delivered, on.Expected, of.Delivered, of.Expected)
		for _, q := range []float64{0.5, 0.99} {
			a, b := quantile(on.Lat, q), quantile(of.Lat, q)
			fmt.Fprintf(w, "| latency p%g | %s | %s | %.2f× |\n", 100*q, ms(a), ms(b), a/b)
		}
		a, b := median(on.CPU), median(of.CPU)
		fmt.Fprintf(w, "| CPU per change per peer, median | %.1f µs | %.1f µs | %.2f× |\n", a/1e3, b/1e3, a/b)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Ratios are Convene ÷ automerge-repo (< 1: Convene lower). Latency: from the change on a (send time read there) to the change event on b; bytes: TCP payload through the counting proxy, both directions, from b's connect request to b holding the document (Convene: libp2p Noise + yamux framing included; automerge-repo: WebSocket framing).")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
