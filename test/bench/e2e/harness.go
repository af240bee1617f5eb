package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/convene-p2p/convene/room"
)

// Options configure one run of the harness.
type Options struct {
	// Ns are the room sizes measured (one cluster per N).
	Ns []int
	// Degree is how many other nodes each node dials.
	Degree int
	// Seed makes the graphs and the choice of leavers/joiners reproducible.
	Seed uint64
	// Room is the room configuration of every node. Zero means
	// room.DefaultConfig().
	Room room.Config

	// Rate is the number of updates per second, over the whole room, in the
	// latency run; each node's own updates are at least
	// max(100ms, 2×PublishInterval) apart so that coalescing never merges
	// two of them. Cycles is the number of rounds per mode (every node sends
	// one update per round; raw and Convene rounds alternate).
	Rate   float64
	Cycles int
	// MinSamples, if positive, raises the rounds at size N to
	// max(Cycles, ceil(MinSamples/N)), so that each mode publishes at least
	// MinSamples updates. Every update is one latency sample per receiver,
	// so a mode gets at least MinSamples×(N−1) samples (exactly MinSamples
	// at N = 2, where Cycles alone gives too few for a p99). Zero means
	// Cycles rounds at every N.
	MinSamples int
	// Quiet is the idle window in which background traffic is measured.
	// Zero means max(3s, HeartbeatInterval): Convene's background is one
	// heartbeat per member per interval, so a shorter window is noise.
	Quiet time.Duration

	LeaveTrials int
	JoinTrials  int
	CrashTrials int
	// JoinDegree is how many members a newcomer (or crash victim) dials.
	JoinDegree int
	// Settle is the pause after a join, rejoin or leave before the next
	// measurement. Zero means 1.5 s (see defaultSettle).
	Settle time.Duration

	// The load run: LoadNodes nodes each move their cursor at LoadHz for
	// LoadDuration. Zero LoadNodes skips it.
	LoadNodes    int
	LoadHz       float64
	LoadDuration time.Duration
	// LoadHzAlt, if positive, repeats the load run at this rate: one the
	// machine can carry, to tell the stacks' behaviour apart from the
	// machine's limit.
	LoadHzAlt float64
	// MemSettle is how long the first load run waits, rooms joined, before
	// measuring the room's memory, so that the join burst has left pubsub's
	// 30 s seen-message and score caches. Zero measures at once.
	MemSettle time.Duration

	// Rooms is the number of rooms joined by one node (and by a second node
	// so each room has a remote member) for the many-rooms run; RoomsWindow
	// is the idle window over which heartbeat CPU is measured. Zero Rooms
	// skips it.
	Rooms       int
	RoomsWindow time.Duration

	// Progress receives one line per step (nil: none).
	Progress io.Writer `json:"-"`
}

// DefaultOptions is the default run (a few minutes).
func DefaultOptions() Options {
	return Options{
		Ns: []int{2, 10, 30, 50}, Degree: 3, Seed: 1,
		Rate: 50, Cycles: 10, MinSamples: 100,
		LeaveTrials: 10, JoinTrials: 10, CrashTrials: 1, JoinDegree: 3,
		LoadNodes: 50, LoadHz: 20, LoadDuration: 10 * time.Second, LoadHzAlt: 2,
		MemSettle: 31 * time.Second,
		Rooms:     1000, RoomsWindow: 10 * time.Second,
	}
}

// FullOptions is the run documented in docs/BENCHMARKS.md (-full).
func FullOptions() Options {
	o := DefaultOptions()
	o.Cycles, o.MinSamples = 30, 1000
	o.Quiet = 2 * room.DefaultConfig().HeartbeatInterval
	o.LeaveTrials, o.JoinTrials, o.CrashTrials = 20, 20, 3
	o.LoadDuration = 60 * time.Second
	o.RoomsWindow = 30 * time.Second
	return o
}

// rounds is the number of latency rounds per mode at size N.
func (o Options) rounds(N int) int {
	r := o.Cycles
	if o.MinSamples > 0 && N > 0 {
		r = max(r, (o.MinSamples+N-1)/N)
	}
	return r
}

func (o Options) settle() time.Duration {
	if o.Settle > 0 {
		return o.Settle
	}
	return defaultSettle
}

func (o Options) quiet() time.Duration {
	if o.Quiet > 0 {
		return o.Quiet
	}
	return max(3*time.Second, o.roomConfig().HeartbeatInterval)
}

func (o Options) roomConfig() room.Config {
	if o.Room == (room.Config{}) {
		return room.DefaultConfig()
	}
	c := o.Room
	if c.Timeout == 0 {
		c.Timeout = room.DefaultTimeout
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = c.Timeout / 3
	}
	if c.PublishInterval == 0 {
		c.PublishInterval = room.DefaultPublishInterval
	}
	return c
}

// Results is everything a run measured.
type Results struct {
	Opts     Options
	RoomCfg  room.Config
	Machine  Machine
	Started  time.Time
	Finished time.Time
	RawSize  int
	PerN     []NResult
	Load     *LoadResult
	LoadAlt  *LoadResult
	Rooms    *RoomsResult
}

// NResult is one room size.
type NResult struct {
	N, Edges int
	LoadAvg  string        // machine load average when this N started
	Setup    time.Duration // build + connect + full presence everywhere
	// ColdStart: every node joined and set its cursor before any connection;
	// from the last dial until every node holds every cursor.
	ColdStart time.Duration
	Period    time.Duration // per-node update period in the latency run
	Rounds    int           // latency rounds per mode (Options.rounds)

	// Background traffic (bytes sent per second, all nodes) in the quiet
	// window, per router.
	BgRaw, BgConvene float64
	QuietCPU         time.Duration

	Raw, Convene ModeResult
	Leave        LeaveResult
	Join         JoinResult
	Crash        CrashResult
}

// ModeResult is the latency run of one mode (raw GossipSub or Convene).
type ModeResult struct {
	Samples             []float64 // ms, sorted
	Lat                 Dist
	ByHops              []Dist  // index: hop distance sender → receiver in the connection graph
	Sent                int     // updates published
	Expected, Delivered int     // receptions
	Bytes               int64   // sent on this router's protocols during the whole latency run
	BytesNet            float64 // Bytes minus the background rate × the run's duration
	CPU                 time.Duration
	Lost                int // rounds that timed out
}

func (m ModeResult) ratio() float64 {
	if m.Expected == 0 {
		return 0
	}
	return float64(m.Delivered) / float64(m.Expected)
}

func (m ModeResult) perUpdate(net bool) float64 {
	if m.Delivered == 0 {
		return 0
	}
	if net {
		return m.BytesNet / float64(m.Delivered)
	}
	return float64(m.Bytes) / float64(m.Delivered)
}

// LeaveResult: a member calls Leave; time until MemberLeft (reason left) at
// every other member.
type LeaveResult struct {
	Trials, Complete int
	PerReceiver      Dist // each (trial, receiver)
	Everywhere       Dist // per trial: the last receiver
	WrongReason      int
}

// JoinResult: a newcomer joins the room (N existing members), dials
// JoinDegree of them and waits until it holds every member's cursor.
type JoinResult struct {
	Trials, Complete int
	FromDial         Dist // dial start → newcomer holds all N members' cursors
	Half             Dist // dial start → newcomer holds half of them
	FromConnect      Dist // first connection established → same
	MembersSee       Dist // dial start → every member holds the newcomer's cursor
	// Bytes is the mean traffic of one join: bytes sent by every node
	// (Convene protocols) and the newcomer (all protocols) from the dial
	// until Options.Settle after everyone saw everyone.
	Bytes float64
}

// CrashResult: a member (a visitor that joined and dialled JoinDegree
// members) has its host closed; time until every member dropped it.
type CrashResult struct {
	Trials, Complete int
	Neighbours       Dist // members directly connected to the victim
	Others           Dist // members not directly connected
	Everywhere       Dist // per trial: the last member
	ViaProbe         int  // removals faster than Timeout (PeerDown hint + failed probe)
	ViaTimeout       int  // removals at or after Timeout (silence)
	Missing          int  // receivers that had not removed it by the deadline
	Bound            time.Duration
}

// Run measures every N in o.Ns, then the load run and the many-rooms run.
func Run(ctx context.Context, o Options) (*Results, error) {
	o.Quiet = o.quiet()
	res := &Results{Opts: o, RoomCfg: o.roomConfig(), Machine: machine(), Started: time.Now()}
	size, err := rawPayloadSize()
	if err != nil {
		return nil, err
	}
	res.RawSize = size
	for _, N := range o.Ns {
		if N < 2 {
			return nil, fmt.Errorf("e2e: N must be at least 2, got %d", N)
		}
		r, err := runN(ctx, o, N)
		if err != nil {
			return nil, fmt.Errorf("e2e: N=%d: %w", N, err)
		}
		res.PerN = append(res.PerN, *r)
	}
	if o.LoadNodes > 1 {
		l, err := runLoad(ctx, o, o.LoadHz, true)
		if err != nil {
			return nil, fmt.Errorf("e2e: load: %w", err)
		}
		res.Load = l
		if o.LoadHzAlt > 0 {
			if res.LoadAlt, err = runLoad(ctx, o, o.LoadHzAlt, false); err != nil {
				return nil, fmt.Errorf("e2e: load at %v Hz: %w", o.LoadHzAlt, err)
			}
		}
	}
	if o.Rooms > 0 {
		r, err := runRooms(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("e2e: rooms: %w", err)
		}
		res.Rooms = r
	}
	res.Finished = time.Now()
	res.Machine.LoadAfter = loadAvg()
	return res, nil
}

func (o Options) logf(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
}

func runN(ctx context.Context, o Options, N int) (*NResult, error) {
	rcfg := o.roomConfig()
	la := loadAvg()
	o.logf("N=%d: building %d hosts (load avg %s)", N, N, la)
	t0 := time.Now()
	c, err := buildCluster(ctx, N, o.Degree, o.Seed, rcfg, true, true)
	if err != nil {
		return nil, err
	}
	defer c.close()
	res := &NResult{N: N, Edges: len(c.edges), LoadAvg: la}
	if !waitUntil(ctx, wait, 10*time.Millisecond, c.fullPresence) {
		return nil, fmt.Errorf("room did not converge: not every node sees every cursor within %v", wait)
	}
	res.Setup = time.Since(t0)
	res.ColdStart = time.Since(c.connected)
	o.logf("N=%d: %d edges, full presence after %v", N, len(c.edges), res.Setup.Round(time.Millisecond))

	if err := warmUp(ctx, c); err != nil {
		return nil, err
	}

	// Background traffic: nothing is published by the harness.
	o.logf("N=%d: quiet window %v", N, o.quiet())
	r0, c0, _ := c.sentBytes()
	cpu := startCPU()
	q0 := time.Now()
	sleepCtx(ctx, o.quiet())
	qd := time.Since(q0)
	r1, c1, _ := c.sentBytes()
	res.QuietCPU = cpu.elapsed()
	res.BgRaw = float64(r1-r0) / qd.Seconds()
	res.BgConvene = float64(c1-c0) / qd.Seconds()

	o.logf("N=%d: latency run, %d rounds per mode", N, o.rounds(N))
	if err := latencyRun(ctx, o, c, res); err != nil {
		return nil, err
	}
	o.logf("N=%d: raw p50 %.2f p99 %.2f ms (%d/%d); convene p50 %.2f p99 %.2f ms (%d/%d)", N,
		res.Raw.Lat.P50, res.Raw.Lat.P99, res.Raw.Delivered, res.Raw.Expected,
		res.Convene.Lat.P50, res.Convene.Lat.P99, res.Convene.Delivered, res.Convene.Expected)

	rng := rand.New(rand.NewPCG(o.Seed, uint64(N)+1000))
	if err := leaveRun(ctx, o, c, rng, res); err != nil {
		return nil, err
	}
	o.logf("N=%d: leave p50 %.2f p99 %.2f ms", N, res.Leave.PerReceiver.P50, res.Leave.PerReceiver.P99)
	if err := joinRun(ctx, o, c, rng, res); err != nil {
		return nil, err
	}
	o.logf("N=%d: join p50 %.1f p99 %.1f ms", N, res.Join.FromDial.P50, res.Join.FromDial.P99)
	if err := crashRun(ctx, o, c, rng, res); err != nil {
		return nil, err
	}
	o.logf("N=%d: crash everywhere max %.0f ms (probe %d, timeout %d, missing %d)", N,
		res.Crash.Everywhere.Max, res.Crash.ViaProbe, res.Crash.ViaTimeout, res.Crash.Missing)
	return res, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
