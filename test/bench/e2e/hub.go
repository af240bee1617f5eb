package main

// The hub comparison (go run ./test/bench/e2e hub): Convene rooms and the
// y-websocket hub (Yjs awareness through @y/websocket-server, the npm
// packages pinned in yhub/package.json) side by side on one workload, with
// the nodes spread over processes the same way for both, and raw GossipSub
// as the floor in Convene's processes. See docs/BENCHMARKS.md §6.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/convene-p2p/convene/room"
	"github.com/convene-p2p/convene/test/bench/internal/benchproc"
)

// HubOptions configure a hub comparison run.
type HubOptions struct {
	Ns []int
	// PerNodeMax: at N up to this, the run is repeated with one process per
	// node (besides the two-process layout every N gets).
	PerNodeMax int
	Raw        bool // the raw GossipSub floor in Convene's processes
	Degree     int
	Seed       uint64
	Rate       float64 // updates per second over the room in the latency run
	Cycles     int
	MinSamples int
	Quiet      time.Duration

	LeaveTrials, JoinTrials, KillTrials, StopTrials int
	JoinDegree                                      int
	Settle                                          time.Duration

	LoadNodes int
	LoadHz    float64
	LoadDur   time.Duration
	// LoadDrain bounds the wait for every final value after the load.
	LoadDrain time.Duration

	Room     room.Config
	Progress io.Writer `json:"-"`
}

// DefaultHubOptions is the default (short) run.
func DefaultHubOptions() HubOptions {
	return HubOptions{
		Ns: []int{2, 10, 30, 50}, PerNodeMax: 10, Raw: true, Degree: 3, Seed: 1,
		Rate: 50, Cycles: 10, MinSamples: 100, Quiet: 5 * time.Second,
		LeaveTrials: 3, JoinTrials: 3, KillTrials: 1, StopTrials: 0, JoinDegree: 3,
		Settle:    1500 * time.Millisecond,
		LoadNodes: 50, LoadHz: 20, LoadDur: 10 * time.Second, LoadDrain: 60 * time.Second,
		Room: room.DefaultConfig(),
	}
}

// FullHubOptions is the run documented in docs/BENCHMARKS.md (-full).
func FullHubOptions() HubOptions {
	o := DefaultHubOptions()
	o.Cycles, o.MinSamples, o.Quiet = 30, 500, 10*time.Second
	o.LeaveTrials, o.JoinTrials, o.KillTrials, o.StopTrials = 10, 10, 3, 1
	return o
}

func (o HubOptions) logf(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
}

func (o HubOptions) rounds(N int) int {
	r := o.Cycles
	if o.MinSamples > 0 {
		r = max(r, (o.MinSamples+N-1)/N)
	}
	return r
}

// HubResults is a whole hub comparison run.
type HubResults struct {
	Opts     HubOptions
	Machine  Machine
	Node     string
	Versions map[string]string
	Started  time.Time
	Finished time.Time
	Runs     []HubRun
	Load     []HubLoad
}

// HubRun is one room size in one process layout.
type HubRun struct {
	N      int
	Layout string // "2 procs" or "1 proc/node"
	Procs  int    // client processes (the hub's server not counted)
	Rounds int
	Period time.Duration
	LoadAv string
	Modes  map[string]*HubMode // "hub", "convene", "raw"
	Sides  map[string]*HubSide // "hub", "convene"
}

// HubMode is the latency run of one mode.
type HubMode struct {
	Samples             []float64 `json:"-"`
	Lat                 Dist
	Sent                int
	Delivered, Expected int
	Bytes               int64   // sent by every process of the side during this mode's rounds
	BytesNet            float64 // minus the side's background rate × the rounds' time
	CPU                 time.Duration
	Dur                 time.Duration // time in this mode's rounds
	Lost                int           // rounds that timed out
}

// HubSide holds one side's membership figures.
type HubSide struct {
	BgBytes, BgCPU float64 // per second, quiet window
	Join           HubJoin
	Leave          HubDetect
	Kill           HubDetect
	Stop           HubDetect
}

// HubJoin: a newcomer joins a room of N.
type HubJoin struct {
	Trials, Complete int
	FromConnect      Dist // newcomer's connect (dial or WebSocket open) start → holds all N cursors
	FromConnected    Dist // first connection established → same
	MembersSee       Dist // connect start → every member holds the newcomer's cursor
}

// HubDetect: a member leaves, is killed (-9) or stopped (SIGSTOP); time
// from the call or signal until each other member dropped it.
type HubDetect struct {
	Trials, Complete int
	PerMember        Dist
	Everywhere       Dist // per trial, the last member
	Missing          int
}

// HubLoad is the load run of one side.
type HubLoad struct {
	Side                   string
	Nodes                  int
	Hz                     float64
	Sent                   int
	Applied                int64
	FinalOK, FinalExpected int
	Converged              time.Duration // end of sending → every final value everywhere
	Lat                    Dist
	CPU                    time.Duration
	Bytes                  int64
	LoadAv                 string
}

func (m *HubMode) perDelivery(v float64) float64 {
	if m == nil || m.Delivered == 0 {
		return 0
	}
	return v / float64(m.Delivered)
}

// hubEnv is what the run needs: the yhub folder (node_modules installed)
// and this binary.
type hubEnv struct {
	dir, exe, tmp string
	node          string
	versions      map[string]string
}

// yhubPinned are the packages yhub/package.json pins.
var yhubPinned = []string{"@y/websocket-server", "y-websocket", "yjs", "y-protocols"}

// prepareHub finds yhub/, runs npm ci there if node_modules is missing, and
// checks that the installed versions are the pinned ones.
func prepareHub(progress io.Writer) (*hubEnv, error) {
	dir, err := benchproc.FindDir("client.mjs", "yhub", "yhub", filepath.Join("test", "bench", "e2e", "yhub"))
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	env := &hubEnv{dir: dir}
	if err := benchproc.NPMInstall(dir, "@y/websocket-server", progress); err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	pinned, err := benchproc.Pinned(dir, yhubPinned)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	if env.exe, err = os.Executable(); err != nil {
		return nil, err
	}
	p, err := env.start("hub", "server.mjs", nil)
	if err != nil {
		return nil, err
	}
	defer p.Stop()
	var hello struct {
		Node     string            `json:"node"`
		Versions map[string]string `json:"versions"`
	}
	if err := p.Call(map[string]any{"op": "hello"}, &hello); err != nil {
		return nil, err
	}
	if err := benchproc.CheckPinned(dir, pinned, hello.Versions); err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	env.node, env.versions = hello.Node, hello.Versions
	return env, nil
}

// start starts a node process: script "" is a Convene node process (this
// binary), else a script of yhub/.
func (e *hubEnv) start(name, script string, ev func(hubEvent)) (*hproc, error) {
	var cmd *exec.Cmd
	if script == "" {
		cmd = exec.Command(e.exe)
		cmd.Env = append(os.Environ(), hubProcEnv+"=1")
	} else {
		cmd = exec.Command("node", script)
		cmd.Dir = e.dir
	}
	return startHProc(name, cmd, ev)
}

// hubSide is one side of a run: its processes and where each node lives.
type hubSide struct {
	name   string // "hub" or "convene"
	env    *hubEnv
	server *hproc // the hub's server (nil for Convene)
	url    string
	procs  []*hproc
	of     map[int]*hproc // node index → its process
	addrs  map[int]hubAddr
	extra  []*hproc // victims' processes

	mu    sync.Mutex
	watch *hubWatch
}

func (s *hubSide) script() string {
	if s.name == "hub" {
		return "client.mjs"
	}
	return ""
}

// all is every process whose CPU counts for the side.
func (s *hubSide) all() []*hproc {
	out := slices.Clone(s.procs)
	if s.server != nil {
		out = append(out, s.server)
	}
	return out
}

func (s *hubSide) event(e hubEvent) {
	s.mu.Lock()
	w := s.watch
	s.mu.Unlock()
	if w != nil {
		w.event(e)
	}
}

func (s *hubSide) setWatch(w *hubWatch) {
	s.mu.Lock()
	s.watch = w
	s.mu.Unlock()
}

// hubWatch collects, per wanted receiver, the time of the first event of
// kind about peer.
type hubWatch struct {
	kind string
	peer int
	mu   sync.Mutex
	want map[int]bool
	at   map[int]int64
	done chan struct{}
}

func newHubWatch(kind string, peer int, recvs []int) *hubWatch {
	w := &hubWatch{kind: kind, peer: peer, want: map[int]bool{}, at: map[int]int64{}, done: make(chan struct{})}
	for _, r := range recvs {
		if r != peer {
			w.want[r] = true
		}
	}
	if len(w.want) == 0 {
		close(w.done)
	}
	return w
}

func (w *hubWatch) event(e hubEvent) {
	if e.Ev != w.kind || e.Peer != w.peer {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.want[e.Recv] {
		return
	}
	if _, ok := w.at[e.Recv]; ok {
		return
	}
	w.at[e.Recv] = e.T
	if len(w.at) == len(w.want) {
		close(w.done)
	}
}

func (w *hubWatch) wait(ctx context.Context, d time.Duration) (map[int]int64, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	ok := true
	select {
	case <-w.done:
	case <-t.C:
		ok = false
	case <-ctx.Done():
		ok = false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps2(w.at), ok && len(w.at) == len(w.want)
}

func maps2(m map[int]int64) map[int]int64 {
	out := make(map[int]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (s *hubSide) close() {
	var wg sync.WaitGroup
	for _, p := range append(append(slices.Clone(s.procs), s.extra...), s.server) {
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop() }()
	}
	wg.Wait()
}

// startSide starts side name with N nodes over procs processes and waits
// until every node holds every cursor.
func startSide(ctx context.Context, o HubOptions, env *hubEnv, name string, N, procs int, raw bool) (*hubSide, error) {
	s := &hubSide{name: name, env: env, of: map[int]*hproc{}, addrs: map[int]hubAddr{}}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	if name == "hub" {
		srv, err := env.start("hub server", "server.mjs", nil)
		if err != nil {
			return nil, err
		}
		s.server = srv
		var hello struct{ Port int }
		if err := srv.Call(map[string]any{"op": "hello"}, &hello); err != nil {
			return nil, err
		}
		s.url = fmt.Sprintf("ws://127.0.0.1:%d", hello.Port)
	}
	groups := make([][]int, procs)
	for i := range N {
		groups[i%procs] = append(groups[i%procs], i)
	}
	errs := make([]error, procs)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for k, g := range groups {
		p, err := env.start(fmt.Sprintf("%s proc %d", name, k), s.script(), s.event)
		if err != nil {
			return nil, err
		}
		s.procs = append(s.procs, p)
		for _, i := range g {
			s.of[i] = p
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r struct{ Nodes []hubAddr }
			errs[k] = p.Call(map[string]any{"op": "start", "nodes": g, "url": s.url, "raw": raw, "room": roomCfgJSON(o.Room)}, &r)
			mu.Lock()
			for j, a := range r.Nodes {
				s.addrs[g[j]] = a
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if name == "convene" {
		edges := randomGraph(N, o.Degree, newRand(o.Seed+uint64(N)))
		sem := make(chan struct{}, 8)
		errs := make([]error, len(edges))
		for k, e := range edges {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				b := s.addrs[e[1]]
				errs[k] = s.of[e[0]].Call(map[string]any{"op": "connect", "i": e[0], "peer": b.ID, "addrs": b.Addrs}, nil)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	want := make([][2]uint32, N)
	for j := range N {
		want[j] = [2]uint32{uint32(j), 0}
	}
	if err := s.await(nil, want, wait); err != nil {
		return nil, fmt.Errorf("%s: room did not converge: %w", name, err)
	}
	ok = true
	return s, nil
}

func roomCfgJSON(c room.Config) hubRoomCfg {
	return hubRoomCfg{TimeoutMs: c.Timeout.Milliseconds(), HeartbeatMs: c.HeartbeatInterval.Milliseconds(), PublishMs: c.PublishInterval.Milliseconds()}
}

// await waits until every node (recvs: of these processes; nil: all) holds
// every wanted (sender, seq).
func (s *hubSide) await(procs []*hproc, want [][2]uint32, d time.Duration) error {
	if procs == nil {
		procs = s.procs
	}
	var wg sync.WaitGroup
	errs := make([]error, len(procs))
	for k, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r struct{ OK bool }
			if errs[k] = p.Call(map[string]any{"op": "await", "want": want, "timeout_ms": d.Milliseconds()}, &r); errs[k] == nil && !r.OK {
				errs[k] = fmt.Errorf("%s: not every wanted cursor within %v", p.Name(), d)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

type procStats struct {
	CPU    int64 `json:"cpu_ns"`
	TX, RX int64
}

// stats sums CPU time and bytes over the side's processes: Convene's bytes
// are what its nodes' sockets sent; the hub's are its server's traffic both
// ways (every byte any client sends or receives passes through it).
func (s *hubSide) stats() (cpu time.Duration, bytes int64, err error) {
	all := s.all()
	res := make([]procStats, len(all))
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for k, p := range all {
		wg.Add(1)
		go func() { defer wg.Done(); errs[k] = p.Call(map[string]any{"op": "stats"}, &res[k]) }()
	}
	wg.Wait()
	for _, r := range res {
		cpu += time.Duration(r.CPU)
		bytes += r.TX
		if s.name == "hub" {
			bytes += r.RX
		}
	}
	return cpu, bytes, errors.Join(errs...)
}

// hubRecord is one record of a process's log: a send (Recv = senderRec) or
// a reception.
type hubRecord struct {
	Recv, Sender int
	Seq          uint32
	T            int64
}

// dump collects and clears every process's log.
func (s *hubSide) dump(tmp string) ([]hubRecord, error) {
	var out []hubRecord
	for k, p := range s.procs {
		f := filepath.Join(tmp, fmt.Sprintf("%s-%d.log", s.name, k))
		if err := p.Call(map[string]any{"op": "dump", "file": f}, nil); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		_ = os.Remove(f)
		for i := 0; i+16 <= len(b); i += 16 {
			out = append(out, hubRecord{
				Recv:   int(binary.LittleEndian.Uint16(b[i:])),
				Sender: int(binary.LittleEndian.Uint16(b[i+2:])),
				Seq:    binary.LittleEndian.Uint32(b[i+4:]),
				T:      int64(math.Float64frombits(binary.LittleEndian.Uint64(b[i+8:]))),
			})
		}
	}
	return out, nil
}

// hubRun runs every N and layout, then the load run.
func hubRun(ctx context.Context, o HubOptions) (*HubResults, error) {
	env, err := prepareHub(o.Progress)
	if err != nil {
		return nil, err
	}
	if env.tmp, err = os.MkdirTemp("", "convene-hub-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(env.tmp)
	res := &HubResults{Opts: o, Machine: machine(), Node: env.node, Versions: env.versions, Started: time.Now()}
	for _, N := range o.Ns {
		layouts := []int{2}
		if N <= o.PerNodeMax && N > 2 {
			layouts = append(layouts, N)
		}
		if N == 2 && o.PerNodeMax >= 2 {
			layouts = []int{2} // two processes is one per node
		}
		for _, procs := range layouts {
			r, err := hubRunN(ctx, o, env, N, min(procs, N))
			if err != nil {
				return nil, fmt.Errorf("hub: N=%d, %d procs: %w", N, procs, err)
			}
			res.Runs = append(res.Runs, *r)
		}
	}
	if o.LoadNodes > 1 {
		for k, name := range []string{"hub", "convene"} {
			if k > 0 {
				sleepCtx(ctx, 3*time.Second)
			}
			l, err := hubLoadRun(ctx, o, env, name)
			if err != nil {
				return nil, fmt.Errorf("hub: load %s: %w", name, err)
			}
			res.Load = append(res.Load, *l)
		}
	}
	res.Finished = time.Now()
	res.Machine.LoadAfter = loadAvg()
	return res, nil
}

func layoutName(N, procs int) string {
	if procs == N {
		return "1 proc/node"
	}
	return fmt.Sprintf("%d procs", procs)
}

func hubRunN(ctx context.Context, o HubOptions, env *hubEnv, N, procs int) (*HubRun, error) {
	r := &HubRun{N: N, Procs: procs, Layout: layoutName(N, procs), LoadAv: loadAvg(), Modes: map[string]*HubMode{}, Sides: map[string]*HubSide{}}
	o.logf("N=%d, %s: starting both sides (load avg %s)", N, r.Layout, r.LoadAv)
	hub, err := startSide(ctx, o, env, "hub", N, procs, false)
	if err != nil {
		return nil, err
	}
	defer hub.close()
	cv, err := startSide(ctx, o, env, "convene", N, procs, o.Raw)
	if err != nil {
		return nil, err
	}
	defer cv.close()
	sides := map[string]*hubSide{"hub": hub, "convene": cv}
	modes := []string{"hub", "convene"}
	if o.Raw {
		modes = append(modes, "raw")
	}
	sideOf := func(mode string) *hubSide {
		if mode == "hub" {
			return hub
		}
		return cv
	}
	seq := make([]uint32, N) // per node, shared by its side's modes
	seqs := map[string][]uint32{"hub": slices.Clone(seq), "convene": seq}

	round := func(mode string, period time.Duration, timeout time.Duration, m *HubMode, kind map[[2]uint32]string) (bool, error) {
		s := sideOf(mode)
		sq := seqs[s.name]
		cpu0, b0, err := s.stats()
		if err != nil {
			return false, err
		}
		t0 := time.Now()
		base := time.Now()
		want := make([][2]uint32, N)
		var replies []<-chan hreply
		for i := range N {
			sleepCtx(ctx, time.Until(base.Add(period*time.Duration(i)/time.Duration(N))))
			sq[i]++
			want[i] = [2]uint32{uint32(i), sq[i]}
			if kind != nil {
				kind[[2]uint32{uint32(i), sq[i]}] = mode
			}
			replies = append(replies, s.of[i].Send(map[string]any{"op": "set", "i": i, "mode": mode, "seq": sq[i]}))
		}
		for _, ch := range replies {
			if rep := <-ch; rep.Err != nil {
				return false, rep.Err
			}
		}
		err = s.await(nil, want, timeout)
		complete := err == nil
		cpu1, b1, serr := s.stats()
		if serr != nil {
			return false, serr
		}
		if m != nil {
			m.CPU += cpu1 - cpu0
			m.Bytes += b1 - b0
			m.Dur += time.Since(t0)
			m.Sent += N
			if !complete {
				m.Lost++
			}
		}
		return complete, nil
	}

	// Warm-up: two complete rounds in a row per mode.
	minPeriod := max(100*time.Millisecond, 2*o.Room.PublishInterval)
	for _, mode := range modes {
		okRounds := 0
		for attempt := 0; okRounds < 2; attempt++ {
			if attempt == 20 {
				return nil, fmt.Errorf("warm-up (%s): no two complete rounds in a row after 20", mode)
			}
			ok, err := round(mode, minPeriod, 2*time.Second, nil, nil)
			if err != nil {
				return nil, err
			}
			if ok {
				okRounds++
			} else {
				okRounds = 0
			}
		}
	}
	for _, s := range sides {
		if _, err := s.dump(env.tmp); err != nil {
			return nil, err
		}
	}

	// Background: nothing is sent by the harness.
	o.logf("N=%d: quiet window %v", N, o.Quiet)
	type mark struct {
		cpu time.Duration
		b   int64
	}
	before := map[string]mark{}
	for name, s := range sides {
		c, b, err := s.stats()
		if err != nil {
			return nil, err
		}
		before[name] = mark{c, b}
	}
	q0 := time.Now()
	sleepCtx(ctx, o.Quiet)
	qd := time.Since(q0).Seconds()
	for name, s := range sides {
		c, b, err := s.stats()
		if err != nil {
			return nil, err
		}
		r.Sides[name] = &HubSide{BgCPU: (c - before[name].cpu).Seconds() / qd, BgBytes: float64(b-before[name].b) / qd}
	}

	// Latency rounds, the modes' order rotating every round.
	r.Period = max(time.Duration(float64(N)/o.Rate*float64(time.Second)), minPeriod)
	r.Rounds = o.rounds(N)
	o.logf("N=%d: latency run, %d rounds per mode, period %v", N, r.Rounds, r.Period)
	// Which mode each (sender, seq) of each side was sent in.
	kinds := map[string]map[[2]uint32]string{"hub": {}, "convene": {}}
	for _, mode := range modes {
		r.Modes[mode] = &HubMode{}
	}
	for k := range r.Rounds {
		for j := range modes {
			mode := modes[(j+k)%len(modes)]
			if _, err := round(mode, r.Period, 3*time.Second, r.Modes[mode], kinds[sideOf(mode).name]); err != nil {
				return nil, err
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
	for name, s := range sides {
		recs, err := s.dump(env.tmp)
		if err != nil {
			return nil, err
		}
		kind := kinds[name]
		lr := map[string]*latRec{}
		for _, mode := range modes {
			if sideOf(mode).name == name {
				lr[mode] = newLatRec(N)
			}
		}
		for _, x := range recs {
			if x.Recv == senderRec {
				if m, ok := kind[[2]uint32{uint32(x.Sender), x.Seq}]; ok && lr[m] != nil {
					lr[m].sending(x.Sender, x.Seq, time.Duration(x.T))
				}
			}
		}
		for _, x := range recs {
			if x.Recv != senderRec {
				if m, ok := kind[[2]uint32{uint32(x.Sender), x.Seq}]; ok && lr[m] != nil {
					lr[m].arrived(x.Recv, x.Sender, x.Seq, time.Duration(x.T))
				}
			}
		}
		for mode, rec := range lr {
			m := r.Modes[mode]
			m.Delivered, m.Expected = rec.counts()
			m.Samples = rec.samples()
			m.Lat = dist(m.Samples)
			m.BytesNet = float64(m.Bytes) - r.Sides[name].BgBytes*m.Dur.Seconds()
		}
	}
	for _, mode := range modes {
		m := r.Modes[mode]
		o.logf("N=%d %s: p50 %.2f p99 %.2f ms, %d/%d delivered, %.0f B and %.0f µs CPU per delivery", N, mode,
			m.Lat.P50, m.Lat.P99, m.Delivered, m.Expected, m.perDelivery(float64(m.Bytes)), m.perDelivery(float64(m.CPU)/1e3))
	}

	rng := rand.New(rand.NewPCG(o.Seed, uint64(N)+2000))
	visitor := N
	for _, name := range []string{"hub", "convene"} {
		s := sides[name]
		if err := leaveTrials(ctx, o, s, N, seqs[name], rng, &r.Sides[name].Leave); err != nil {
			return nil, fmt.Errorf("%s leave: %w", name, err)
		}
		if err := joinTrials(ctx, o, s, N, rng, &visitor, &r.Sides[name].Join); err != nil {
			return nil, fmt.Errorf("%s join: %w", name, err)
		}
		if err := victimTrials(ctx, o, s, N, rng, &visitor, o.KillTrials, syscall.SIGKILL, &r.Sides[name].Kill); err != nil {
			return nil, fmt.Errorf("%s kill: %w", name, err)
		}
		sd := r.Sides[name]
		o.logf("N=%d %s: leave max %.1f ms, join p50 %.1f ms, kill -9 per member min %.0f p50 %.0f, everywhere max %.0f ms", N, name,
			sd.Leave.Everywhere.Max, sd.Join.FromConnect.P50, sd.Kill.PerMember.Min, sd.Kill.PerMember.P50, sd.Kill.Everywhere.Max)
	}
	if o.StopTrials > 0 && procs == 2 {
		// Both sides at once: each waits tens of seconds for a timeout.
		var wg sync.WaitGroup
		errs := make([]error, 2)
		vs := []int{visitor, visitor + 1000}
		for k, name := range []string{"hub", "convene"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := vs[k]
				errs[k] = victimTrials(ctx, o, sides[name], N, rand.New(rand.NewPCG(o.Seed, uint64(N+k))), &v, o.StopTrials, syscall.SIGSTOP, &r.Sides[name].Stop)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("stop: %w", err)
		}
		o.logf("N=%d: SIGSTOP dropped everywhere after: hub %.1f s, Convene %.1f s", N, r.Sides["hub"].Stop.Everywhere.Max/1e3, r.Sides["convene"].Stop.Everywhere.Max/1e3)
	}
	return r, nil
}

func members(N int) []int {
	out := make([]int, N)
	for i := range out {
		out[i] = i
	}
	return out
}

// detectRec accumulates samples of a HubDetect.
type detectRec struct{ per, every []float64 }

func (r *detectRec) add(d *HubDetect, t0 int64, at map[int]int64, ok bool, want int) {
	d.Trials++
	if ok {
		d.Complete++
	}
	d.Missing += want - len(at)
	var last int64
	for _, t := range at {
		r.per = append(r.per, ms(time.Duration(t-t0)))
		last = max(last, t-t0)
	}
	if ok {
		r.every = append(r.every, ms(time.Duration(last)))
	}
	d.PerMember, d.Everywhere = dist(slices.Clone(r.per)), dist(slices.Clone(r.every))
}

// leaveTrials: a random member leaves (Convene: Room.Leave, a signed
// goodbye; hub: provider.disconnect(), an awareness update with a null
// state), every other member must drop it; then it rejoins.
func leaveTrials(ctx context.Context, o HubOptions, s *hubSide, N int, seq []uint32, rng *rand.Rand, d *HubDetect) error {
	var rec detectRec
	for range o.LeaveTrials {
		k := rng.IntN(N)
		w := newHubWatch("gone", k, members(N))
		s.setWatch(w)
		var r struct{ T int64 }
		if err := s.of[k].Call(map[string]any{"op": "leave", "i": k}, &r); err != nil {
			// An overloaded machine can time the leave's ack out; the
			// goodbye may still go out. Counted as an incomplete trial.
			o.logf("%s leave trial: %v", s.name, err)
			r.T = mono()
		}
		at, ok := w.wait(ctx, 10*time.Second)
		s.setWatch(nil)
		rec.add(d, r.T, at, ok, N-1)
		seq[k]++
		if err := s.of[k].Call(map[string]any{"op": "rejoin", "i": k, "seq": seq[k]}, nil); err != nil {
			return err
		}
		// Everyone moves once more: a y-websocket client that reconnects
		// gets the server's states but keeps dropping those whose clock it
		// has already seen (y-protocols applyAwarenessUpdate) until each
		// member's next update, so without this the rejoiner would not hold
		// (nor later drop) the others.
		want := make([][2]uint32, N)
		for i := range N {
			if i != k {
				seq[i]++
				if err := s.of[i].Call(map[string]any{"op": "set", "i": i, "mode": s.name, "seq": seq[i]}, nil); err != nil {
					return err
				}
			}
			want[i] = [2]uint32{uint32(i), seq[i]}
		}
		if err := s.await(nil, want, wait); err != nil {
			return fmt.Errorf("after a rejoin: %w", err)
		}
		sleepCtx(ctx, o.Settle)
	}
	return nil
}

// joinTrials: a newcomer node (in the first process) connects (Convene:
// dials JoinDegree random members; hub: opens its WebSocket) and waits
// until it holds every member's cursor; then it says goodbye and closes.
func joinTrials(ctx context.Context, o HubOptions, s *hubSide, N int, rng *rand.Rand, visitor *int, j *HubJoin) error {
	var fromConn, fromConnected, membersSee []float64
	for range o.JoinTrials {
		v := *visitor
		*visitor++
		w := newHubWatch("seen", v, members(N))
		s.setWatch(w)
		var r struct {
			OK    bool  `json:"ok"`
			T0    int64 `json:"t0"`
			TConn int64 `json:"t_conn"`
			TAll  int64 `json:"t_all"`
		}
		err := s.procs[0].Call(map[string]any{"op": "join", "i": v, "url": s.url, "dial": s.dialTargets(rng, N, o.JoinDegree), "want": wantAll(N), "timeout_ms": wait.Milliseconds()}, &r)
		if err != nil {
			s.setWatch(nil)
			return err
		}
		at, ok := w.wait(ctx, wait)
		s.setWatch(nil)
		j.Trials++
		if r.OK && ok {
			j.Complete++
			fromConn = append(fromConn, ms(time.Duration(r.TAll-r.T0)))
			fromConnected = append(fromConnected, ms(time.Duration(r.TAll-r.TConn)))
			var last int64
			for _, t := range at {
				last = max(last, t-r.T0)
			}
			membersSee = append(membersSee, ms(time.Duration(last)))
		}
		wl := newHubWatch("gone", v, members(N))
		s.setWatch(wl)
		if err := s.procs[0].Call(map[string]any{"op": "close", "i": v}, nil); err != nil {
			return err
		}
		if _, ok := wl.wait(ctx, o.Room.Timeout+o.Room.HeartbeatInterval+5*time.Second); !ok {
			o.logf("%s join: not every member dropped the newcomer after its goodbye", s.name)
		}
		s.setWatch(nil)
		sleepCtx(ctx, o.Settle)
	}
	j.FromConnect, j.FromConnected, j.MembersSee = dist(fromConn), dist(fromConnected), dist(membersSee)
	return nil
}

func wantAll(N int) [][2]uint32 {
	w := make([][2]uint32, N)
	for j := range N {
		w[j] = [2]uint32{uint32(j), 0}
	}
	return w
}

// dialTargets is Convene's: the addresses of k random members.
func (s *hubSide) dialTargets(rng *rand.Rand, N, k int) []hubAddr {
	if s.name == "hub" {
		return nil
	}
	var out []hubAddr
	for _, i := range rng.Perm(N)[:min(k, N)] {
		out = append(out, s.addrs[i])
	}
	return out
}

// victimTrials: a fresh process with one node joins the room, is seen by
// every member, then gets sig (SIGKILL: its sockets close; SIGSTOP: frozen,
// sockets open); time until every member dropped it.
func victimTrials(ctx context.Context, o HubOptions, s *hubSide, N int, rng *rand.Rand, visitor *int, trials int, sig syscall.Signal, d *HubDetect) error {
	var rec detectRec
	bound := o.Room.Timeout + o.Room.HeartbeatInterval + 15*time.Second
	for range trials {
		v := *visitor
		*visitor++
		p, err := s.env.start(fmt.Sprintf("%s victim %d", s.name, v), s.script(), nil)
		if err != nil {
			return err
		}
		s.extra = append(s.extra, p)
		w := newHubWatch("seen", v, members(N))
		s.setWatch(w)
		var r struct{ OK bool }
		err = p.Call(map[string]any{"op": "join", "i": v, "url": s.url, "dial": s.dialTargets(rng, N, o.JoinDegree), "want": wantAll(N), "timeout_ms": wait.Milliseconds(), "room": roomCfgJSON(o.Room)}, &r)
		if err == nil && !r.OK {
			err = errors.New("victim did not see every member")
		}
		if err == nil {
			if _, ok := w.wait(ctx, wait); !ok {
				err = errors.New("not every member saw the victim")
			}
		}
		s.setWatch(nil)
		if err != nil {
			return err
		}
		sleepCtx(ctx, o.Settle)
		wl := newHubWatch("gone", v, members(N))
		s.setWatch(wl)
		t0 := mono()
		if err := p.Signal(sig); err != nil {
			return err
		}
		at, ok := wl.wait(ctx, bound)
		s.setWatch(nil)
		rec.add(d, t0, at, ok, N)
		_ = p.Signal(syscall.SIGKILL)
		sleepCtx(ctx, o.Settle)
	}
	return nil
}

// hubLoadRun: LoadNodes nodes over two processes, each moving its cursor at
// LoadHz for LoadDur; then every final value must arrive everywhere.
func hubLoadRun(ctx context.Context, o HubOptions, env *hubEnv, name string) (*HubLoad, error) {
	N := o.LoadNodes
	l := &HubLoad{Side: name, Nodes: N, Hz: o.LoadHz, LoadAv: loadAvg()}
	o.logf("load %s: %d nodes × %.0f Hz for %v over 2 procs (load avg %s)", name, N, o.LoadHz, o.LoadDur, l.LoadAv)
	s, err := startSide(ctx, o, env, name, N, 2, false)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if _, err := s.dump(env.tmp); err != nil {
		return nil, err
	}
	const seq0 = 1
	groups := map[*hproc][]int{}
	for i := range N {
		groups[s.of[i]] = append(groups[s.of[i]], i)
	}
	cpu0, b0, err := s.stats()
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	final := make([]uint32, N)
	var errs []error
	for p, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r struct {
				Sent int
				Last map[string]uint32
			}
			err := p.Call(map[string]any{"op": "load", "nodes": g, "hz": o.LoadHz, "dur_ms": o.LoadDur.Milliseconds(), "seq": seq0}, &r)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			l.Sent += r.Sent
			for k, v := range r.Last {
				i, _ := strconv.Atoi(k)
				final[i] = v
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	stopAt := time.Now()
	want := make([][2]uint32, N)
	for i := range N {
		want[i] = [2]uint32{uint32(i), final[i]}
	}
	_ = s.await(nil, want, o.LoadDrain)
	l.Converged = time.Since(stopAt)
	cpu1, b1, err := s.stats()
	if err != nil {
		return nil, err
	}
	l.CPU, l.Bytes = cpu1-cpu0, b1-b0
	recs, err := s.dump(env.tmp)
	if err != nil {
		return nil, err
	}
	per := int(slices.Max(final)) + 2
	lr := newLoadRec(N, per)
	for _, x := range recs {
		if x.Recv == senderRec && x.Sender < N && int(x.Seq) < per && x.Seq >= seq0 {
			lr.sendAt[x.Sender][x.Seq].Store(x.T)
		}
	}
	for _, x := range recs {
		if x.Recv != senderRec && x.Recv < N {
			lr.presence(x.Recv, x.Sender, x.Seq, time.Duration(x.T))
		}
	}
	l.Applied = lr.applied.Load()
	l.Lat = lr.hist.dist()
	for r := range N {
		for j := range N {
			if r == j {
				continue
			}
			l.FinalExpected++
			if lr.last[r][j].Load() >= final[j] {
				l.FinalOK++
			}
		}
	}
	o.logf("load %s: sent %d, applied %d, final %d/%d after %v, p50 %.1f p99 %.1f ms, %.1f µs CPU per delivery", name,
		l.Sent, l.Applied, l.FinalOK, l.FinalExpected, l.Converged.Round(time.Millisecond), l.Lat.P50, l.Lat.P99, float64(l.CPU)/1e3/float64(max(l.Applied, 1)))
	return l, nil
}
