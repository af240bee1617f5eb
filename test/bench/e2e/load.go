package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"

	"github.com/convene-p2p/convene/gossip"
	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
)

// LoadResult is the load run: every node moves its cursor at a fixed rate,
// first on the raw baseline router, then in the Convene room, on the same
// hosts.
type LoadResult struct {
	Nodes   int
	Hz      float64
	LoadAvg string // machine load average when the run started

	Raw, Convene LoadPhase

	// Memory of the room itself: heap after full GC with the rooms joined and
	// every cursor everywhere, minus before joining (hosts, both routers and
	// the raw topic up and connected); per remote member per room there are
	// Nodes × (Nodes-1) of them.
	HeapBase, HeapJoined     uint64
	StackBase, StackJoined   uint64
	GoroutinesBase, GoJoined int
	// HeapEarly is the heap right after every cursor arrived everywhere,
	// with the join burst still in pubsub's seen-message and peer-score
	// caches; HeapJoined is measured MemSettled later (0: not waited).
	HeapEarly  uint64
	MemSettled time.Duration
}

// LoadPhase is one mode of the load run.
type LoadPhase struct {
	Duration time.Duration // wall time of the sending window

	Sent     int   // updates written (Room.Set or Topic.Publish calls)
	Expected int64 // Sent × (Nodes-1)
	Applied  int64 // receptions (raw) or remote updates applied (PresenceChanged events)

	FinalOK, FinalExpected int           // (receiver, sender) pairs holding the sender's last value
	Converged              time.Duration // stop → every final value everywhere (or the deadline)

	Lat      Dist // send → applied, every applied update (2% histogram)
	Timeline []LoadSecond

	CPU           time.Duration // process CPU (user+sys) over the sending window
	PeakRSS       int64
	PeakRSSReset  bool // the kernel watermark was reset before the window
	GoroutinesMax int

	Gossip    gossip.Stats // Convene: deltas over the window
	Lagged    int64        // Convene: events the harness's watchers missed
	BytesSent int64        // this mode's protocols, all nodes, over the window
}

// LoadSecond is one second of the load run.
type LoadSecond struct {
	Applied    int64
	P99        float64 // ms
	Goroutines int
	HeapInuse  uint64
}

func runLoad(ctx context.Context, o Options, hz float64, measureMem bool) (*LoadResult, error) {
	o.LoadHz = hz
	N := o.LoadNodes
	rcfg := o.roomConfig()
	la := loadAvg()
	o.logf("load: %d nodes × %.0f Hz for %v, raw then Convene (load avg %s)", N, o.LoadHz, o.LoadDuration, la)
	c, err := buildCluster(ctx, N, o.Degree, o.Seed+7, rcfg, true, false)
	if err != nil {
		return nil, err
	}
	defer c.close()
	res := &LoadResult{Nodes: N, Hz: o.LoadHz, LoadAvg: la}
	base := gcSnapshot()
	if err := c.joinAll(); err != nil {
		return nil, err
	}
	if !waitUntil(ctx, wait, 20*time.Millisecond, c.fullPresence) {
		return nil, fmt.Errorf("room did not converge within %v", wait)
	}
	early := gcSnapshot()
	res.HeapEarly = early.HeapAlloc
	joined := early
	if measureMem && o.MemSettle > 0 {
		o.logf("load: waiting %v for the join burst to leave pubsub's 30 s caches", o.MemSettle)
		sleepCtx(ctx, o.MemSettle)
		joined = gcSnapshot()
		res.MemSettled = o.MemSettle
	}
	res.HeapBase, res.HeapJoined = base.HeapAlloc, joined.HeapAlloc
	res.StackBase, res.StackJoined = base.StackInuse, joined.StackInuse
	res.GoroutinesBase, res.GoJoined = base.Goroutines, joined.Goroutines
	if err := warmUp(ctx, c); err != nil {
		return nil, err
	}

	for _, mode := range []string{"raw", "convene"} {
		ph := &res.Raw
		if mode == "convene" {
			ph = &res.Convene
			// Let the raw phase's backlog drain before measuring Convene.
			sleepCtx(ctx, 3*time.Second)
		}
		if err := loadPhase(ctx, o, c, mode, ph); err != nil {
			return nil, fmt.Errorf("%s: %w", mode, err)
		}
		o.logf("load %s: sent %d, applied %d/%d, final %d/%d, p50 %.1f p99 %.1f ms, CPU %v", mode,
			ph.Sent, ph.Applied, ph.Expected, ph.FinalOK, ph.FinalExpected, ph.Lat.P50, ph.Lat.P99, ph.CPU.Round(time.Millisecond))
	}
	return res, nil
}

func loadPhase(ctx context.Context, o Options, c *cluster, mode string, res *LoadPhase) error {
	N := len(c.nodes)
	startSeq := make([]uint32, N)
	maxSeq := uint32(0)
	for i, n := range c.nodes {
		startSeq[i] = n.seq
		maxSeq = max(maxSeq, n.seq)
	}
	perSender := int(maxSeq) + int(o.LoadHz*o.LoadDuration.Seconds()*1.2) + 64
	rec := newLoadRec(N, perSender)
	if mode == "raw" {
		c.setSink(nil, rec)
	} else {
		c.setSink(rec, nil)
	}
	defer c.setSink(nil, nil)

	// Give the previous phase's freed memory back to the OS, so that the
	// watermark starts from this phase's live memory.
	debug.FreeOSMemory()
	res.PeakRSSReset = resetPeakRSS()
	gs0, lag0 := c.gossipStats(), c.lagged.Load()
	r0, b0, _ := c.sentBytes()
	stop := make(chan struct{})
	var wg sync.WaitGroup

	// Monitor: one sample per second.
	var mon sync.WaitGroup
	mon.Add(1)
	go func() {
		defer mon.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		last := rec.applied.Load()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			h := rec.win.Swap(newHistogram())
			a := rec.applied.Load()
			g := runtime.NumGoroutine()
			res.Timeline = append(res.Timeline, LoadSecond{Applied: a - last, P99: h.quantile(0.99), Goroutines: g, HeapInuse: m.HeapInuse})
			res.GoroutinesMax = max(res.GoroutinesMax, g)
			last = a
		}
	}()

	cpu := startCPU()
	start := time.Now()
	period := time.Duration(float64(time.Second) / o.LoadHz)
	rng := rand.New(rand.NewPCG(o.Seed, 99))
	errs := make(chan error, N)
	for i, n := range c.nodes {
		offset := time.Duration(rng.Int64N(int64(period)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTimer(offset)
			select {
			case <-t.C:
			case <-stop:
				t.Stop()
				return
			}
			tick := time.NewTicker(period)
			defer tick.Stop()
			for {
				seq := n.seq + 1
				if int(seq) >= perSender {
					return
				}
				rec.sendAt[i][seq].Store(int64(c.now()))
				var err error
				if mode == "raw" {
					err = n.rawTopic.Publish(ctx, rawPayload(c.rawSize, i, seq))
				} else {
					err = n.room.Set(cursorKey, cursorValue(seq))
				}
				if err != nil {
					errs <- err
					return
				}
				n.seq = seq
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
	sleepCtx(ctx, o.LoadDuration)
	close(stop)
	wg.Wait()
	res.CPU = cpu.elapsed()
	res.Duration = time.Since(start)
	mon.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	r1, b1, _ := c.sentBytes()
	res.BytesSent = b1 - b0
	if mode == "raw" {
		res.BytesSent = r1 - r0
	}

	final := make([]uint32, N)
	for i, n := range c.nodes {
		final[i] = n.seq
		res.Sent += int(n.seq - startSeq[i])
	}
	res.Expected = int64(res.Sent) * int64(N-1)
	stopAt := time.Now()
	finalOK := func() int {
		ok := 0
		for r := range N {
			for s := range N {
				if r != s && (final[s] == startSeq[s] || rec.last[r][s].Load() == final[s]) {
					ok++
				}
			}
		}
		return ok
	}
	// Convene heals lost deltas with the next heartbeat: wait for one.
	deadline := 10 * time.Second
	if mode == "convene" {
		deadline = c.roomCfg.HeartbeatInterval*11/10 + 5*time.Second
	}
	waitUntil(ctx, deadline, 20*time.Millisecond, func() bool { return finalOK() == N*(N-1) })
	res.Converged = time.Since(stopAt)
	res.FinalOK, res.FinalExpected = finalOK(), N*(N-1)
	res.Applied = rec.applied.Load()
	res.Lat = rec.hist.dist()
	res.PeakRSS = peakRSS()
	gs1 := c.gossipStats()
	res.Gossip = gossip.Stats{
		Published:   gs1.Published - gs0.Published,
		Accepted:    gs1.Accepted - gs0.Accepted,
		RateLimited: gs1.RateLimited - gs0.RateLimited,
		Dropped:     gs1.Dropped - gs0.Dropped,
		Malformed:   gs1.Malformed - gs0.Malformed,
	}
	res.Lagged = c.lagged.Load() - lag0
	return nil
}

// RoomsResult is the many-rooms run: two nodes (Repos) in the same R rooms.
type RoomsResult struct {
	Rooms    int
	LoadAvg  string        // machine load average when the run started
	JoinTime time.Duration // both nodes join every room and see each other's cursor

	HeapBase, HeapJoined   uint64
	StackBase, StackJoined uint64
	GoBase, GoJoined       int
	RSSJoined              int64

	Window    time.Duration
	IdleCPU   time.Duration // both nodes, before joining, over IdleWin
	IdleWin   time.Duration
	WindowCPU time.Duration // both nodes, rooms joined, over Window
	Bytes     int64         // sent by both nodes over Window (all protocols)
	CloseTime time.Duration
}

func runRooms(ctx context.Context, o Options) (*RoomsResult, error) {
	rcfg := o.roomConfig()
	R := o.Rooms
	la := loadAvg()
	o.logf("rooms: 2 nodes in %d rooms (load avg %s)", R, la)
	res := &RoomsResult{Rooms: R, Window: o.RoomsWindow, LoadAvg: la}
	bws := []*bwCounter{newBWCounter(), newBWCounter()}
	var repos []*repo.Repo
	defer func() {
		for _, r := range repos {
			_ = r.Close()
		}
	}()
	for _, bw := range bws {
		cfg := repo.LocalConfig()
		cfg.Room = rcfg
		cfg.Host.Options = append(cfg.Host.Options, libp2p.BandwidthReporter(bw))
		r, err := repo.New(ctx, cfg)
		if err != nil {
			return nil, err
		}
		repos = append(repos, r)
	}
	a, b := repos[0], repos[1]
	if err := a.Connect(ctx, b.Addrs()[0].String()); err != nil {
		return nil, err
	}
	res.IdleWin = max(o.RoomsWindow/3, time.Second)
	cpu := startCPU()
	sleepCtx(ctx, res.IdleWin)
	res.IdleCPU = cpu.elapsed()
	base := gcSnapshot()
	res.HeapBase, res.StackBase, res.GoBase = base.HeapAlloc, base.StackInuse, base.Goroutines

	start := time.Now()
	type pair struct{ a, b *room.Room }
	rooms := make([]pair, 0, R)
	for i := range R {
		id := fmt.Sprintf("room-%04d", i)
		ra, err := a.JoinRoom(ctx, id, room.Config{})
		if err != nil {
			return nil, err
		}
		rb, err := b.JoinRoom(ctx, id, room.Config{})
		if err != nil {
			return nil, err
		}
		if err := ra.Set(cursorKey, cursorValue(1)); err != nil {
			return nil, err
		}
		if err := rb.Set(cursorKey, cursorValue(1)); err != nil {
			return nil, err
		}
		rooms = append(rooms, pair{ra, rb})
	}
	pa, pb := room.PeerID(a.ID()), room.PeerID(b.ID())
	ok := waitUntil(ctx, 2*time.Minute, 50*time.Millisecond, func() bool {
		for _, p := range rooms {
			if _, ok := p.a.Get(pb, cursorKey); !ok {
				return false
			}
			if _, ok := p.b.Get(pa, cursorKey); !ok {
				return false
			}
		}
		return true
	})
	if !ok {
		return nil, fmt.Errorf("the two nodes did not see each other in all %d rooms", R)
	}
	res.JoinTime = time.Since(start)
	joined := gcSnapshot()
	res.HeapJoined, res.StackJoined, res.GoJoined = joined.HeapAlloc, joined.StackInuse, joined.Goroutines
	res.RSSJoined = currentRSS()

	o.logf("rooms: joined in %v; idle window %v", res.JoinTime.Round(time.Millisecond), o.RoomsWindow)
	var b0 int64
	for _, bw := range bws {
		b0 += bw.GetBandwidthTotals().TotalOut
	}
	cpu = startCPU()
	sleepCtx(ctx, o.RoomsWindow)
	res.WindowCPU = cpu.elapsed()
	var b1 int64
	for _, bw := range bws {
		b1 += bw.GetBandwidthTotals().TotalOut
	}
	res.Bytes = b1 - b0

	t := time.Now()
	for _, r := range repos {
		_ = r.Close()
	}
	repos = nil
	res.CloseTime = time.Since(t)
	return res, nil
}
