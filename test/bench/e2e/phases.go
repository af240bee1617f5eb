package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/convene-p2p/convene/room"
)

// defaultSettle is the pause after a join, rejoin or leave before the next
// measurement: members whose view of the room differs from a hello's answer
// it with early heartbeats after a random 0–50 ms and repeat that answer
// 600 ms later (room/doc.go, "Answering newcomers"); such a burst is up to
// N heartbeats relayed to everyone, and must have drained before the next
// measurement.
const defaultSettle = 1500 * time.Millisecond

// warmUp publishes rounds of updates in both modes until two rounds in a
// row reach every receiver: the meshes are formed and the first-message
// losses of LIBP2P.md §1.5 are behind us.
func warmUp(ctx context.Context, c *cluster) error {
	N := len(c.nodes)
	for _, mode := range []string{"raw", "convene"} {
		okRounds := 0
		for attempt := 0; okRounds < 2; attempt++ {
			if attempt == 20 {
				return fmt.Errorf("warm-up (%s): no two complete rounds in a row after %d rounds", mode, attempt)
			}
			rec := newLatRec(N)
			if mode == "raw" {
				c.setSink(nil, rec)
			} else {
				c.setSink(rec, nil)
			}
			for i, n := range c.nodes {
				if err := c.send(ctx, mode, rec, i, n); err != nil {
					return err
				}
			}
			if rec.waitAll(ctx, 2*time.Second) {
				okRounds++
			} else {
				okRounds = 0
			}
			sleepCtx(ctx, c.minPeriod())
		}
	}
	c.setSink(nil, nil)
	return nil
}

// minPeriod is the shortest gap between two updates of one node in the
// latency runs: longer than the coalescing window, so every update is
// published on its own.
func (c *cluster) minPeriod() time.Duration {
	return max(100*time.Millisecond, 2*c.roomCfg.PublishInterval)
}

// send publishes node i's next update in mode and registers it in rec.
func (c *cluster) send(ctx context.Context, mode string, rec *latRec, i int, n *node) error {
	n.seq++
	seq := n.seq
	rec.sending(i, seq, c.now())
	if mode == "raw" {
		if err := n.rawTopic.Publish(ctx, rawPayload(c.rawSize, i, seq)); err != nil {
			return fmt.Errorf("raw publish: %w", err)
		}
		return nil
	}
	if err := n.room.Set(cursorKey, cursorValue(seq)); err != nil {
		return fmt.Errorf("room set: %w", err)
	}
	return nil
}

// latencyRun alternates o.rounds(N) rounds of raw and Convene updates. In a
// round every node sends one update, the sends spread evenly over the
// period (N/Rate, at least minPeriod); the round ends when every receiver
// has it (or after a deadline).
func latencyRun(ctx context.Context, o Options, c *cluster, res *NResult) error {
	N := len(c.nodes)
	period := max(time.Duration(float64(N)/o.Rate*float64(time.Second)), c.minPeriod())
	res.Period = period
	res.Rounds = o.rounds(N)
	recs := map[string]*latRec{"raw": newLatRec(N), "convene": newLatRec(N)}
	c.setSink(recs["convene"], recs["raw"])
	defer c.setSink(nil, nil)
	modes := map[string]*ModeResult{"raw": &res.Raw, "convene": &res.Convene}

	r0, c0, _ := c.sentBytes()
	start := time.Now()
	for k := range res.Rounds {
		order := []string{"raw", "convene"}
		if k%2 == 1 {
			order = []string{"convene", "raw"}
		}
		for _, mode := range order {
			rec, m := recs[mode], modes[mode]
			cpu := startCPU()
			base := time.Now()
			for i, n := range c.nodes {
				sleepCtx(ctx, time.Until(base.Add(period*time.Duration(i)/time.Duration(N))))
				if err := c.send(ctx, mode, rec, i, n); err != nil {
					return err
				}
				m.Sent++
			}
			if !rec.waitAll(ctx, 3*time.Second) {
				m.Lost++
			}
			m.CPU += cpu.elapsed()
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	dur := time.Since(start)
	r1, c1, _ := c.sentBytes()
	res.Raw.Bytes, res.Convene.Bytes = r1-r0, c1-c0
	res.Raw.BytesNet = float64(res.Raw.Bytes) - res.BgRaw*dur.Seconds()
	res.Convene.BytesNet = float64(res.Convene.Bytes) - res.BgConvene*dur.Seconds()
	hops := hopMatrix(N, c.edges)
	for mode, m := range modes {
		for _, hs := range recs[mode].byHops(hops) {
			m.ByHops = append(m.ByHops, dist(hs))
		}
		m.Delivered, m.Expected = recs[mode].counts()
		m.Samples = recs[mode].samples()
		m.Lat = dist(m.Samples)
	}
	return nil
}

// leaveRun: a random member calls Leave; every other member must report
// MemberLeft (reason left). The member then rejoins and sets its cursor.
func leaveRun(ctx context.Context, o Options, c *cluster, rng *rand.Rand, res *NResult) error {
	N := len(c.nodes)
	var per, every []float64
	for range o.LeaveTrials {
		k := rng.IntN(N)
		leaver := c.nodes[k]
		pk := room.PeerID(leaver.h.ID())
		others := make([]int, 0, N-1)
		for j := range N {
			if j != k {
				others = append(others, j)
			}
		}
		w := newWatchRec(others, func(_ int, ev room.Event) bool {
			return ev.Type == room.MemberLeft && ev.Member.Peer == pk
		})
		c.watch.Store(w)
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		t0 := c.now()
		err := leaver.room.Leave(lctx)
		cancel()
		if err != nil {
			return fmt.Errorf("leave: %w", err)
		}
		at, ok := w.wait(ctx, 10*time.Second)
		c.watch.Store(nil)
		res.Leave.Trials++
		if ok {
			res.Leave.Complete++
		}
		var last time.Duration
		for j, t := range at {
			per = append(per, ms(t-t0))
			last = max(last, t-t0)
			if w.reason[j] != room.ReasonLeft {
				res.Leave.WrongReason++
			}
		}
		if ok {
			every = append(every, ms(last))
		}

		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = leaver.room.Rejoin(rctx)
		cancel()
		if err != nil {
			return fmt.Errorf("rejoin: %w", err)
		}
		if _, err := leaver.setCursor(); err != nil {
			return err
		}
		if !waitUntil(ctx, wait, 5*time.Millisecond, c.fullPresence) {
			return fmt.Errorf("room did not recover after a rejoin within %v", wait)
		}
		// Members whose view differs answer the rejoin's hello with early
		// heartbeats (and repeat them), relayed everywhere; let that drain
		// so the next leave is measured in steady state.
		sleepCtx(ctx, o.settle())
	}
	res.Leave.PerReceiver = dist(per)
	res.Leave.Everywhere = dist(every)
	return nil
}

// visitor starts a node outside the cluster, joined to the room with its
// cursor set, following its own view of the cluster members' cursors.
func (c *cluster) visitor(ctx context.Context) (*node, *visitorTracker, error) {
	v, err := c.newNode(ctx, -1, false)
	if err != nil {
		return nil, nil, err
	}
	tr := newVisitorTracker(c)
	v.onEvent = tr.event
	if err := v.joinRoom(c.roomCfg); err != nil {
		v.close()
		return nil, nil, err
	}
	if _, err := v.setCursor(); err != nil {
		v.close()
		return nil, nil, err
	}
	return v, tr, nil
}

func (c *cluster) all() []int {
	out := make([]int, len(c.nodes))
	for i := range out {
		out[i] = i
	}
	return out
}

func cursorOf(p room.PeerID) func(int, room.Event) bool {
	return func(_ int, ev room.Event) bool {
		if ev.Type != room.PresenceChanged || ev.Change.Peer != p {
			return false
		}
		return slices.Contains(ev.Change.Added, cursorKey) || slices.Contains(ev.Change.Updated, cursorKey)
	}
}

func leftOf(p room.PeerID) func(int, room.Event) bool {
	return func(_ int, ev room.Event) bool { return ev.Type == room.MemberLeft && ev.Member.Peer == p }
}

// enter makes a visitor join: it dials JoinDegree random members and waits
// until it holds every member's cursor and every member holds its cursor.
// It returns the dial start, the first connection, when the visitor held
// every cursor, and when the last member held the visitor's.
func (c *cluster) enter(ctx context.Context, o Options, rng *rand.Rand, v *node, tr *visitorTracker) (t0, first, sees, seen time.Duration, err error) {
	N := len(c.nodes)
	pv := room.PeerID(v.h.ID())
	w := newWatchRec(c.all(), cursorOf(pv))
	c.watch.Store(w)
	defer c.watch.Store(nil)
	targets := rng.Perm(N)[:min(o.JoinDegree, N)]
	t0 = c.now()
	first, _, err = c.dial(ctx, v, targets)
	if err != nil {
		return
	}
	var ok bool
	if sees, ok = tr.wait(ctx, wait); !ok {
		err = fmt.Errorf("newcomer did not see all %d members within %v", N, wait)
		return
	}
	at, ok := w.wait(ctx, wait)
	if !ok {
		err = fmt.Errorf("only %d of %d members saw the newcomer within %v", len(at), N, wait)
		return
	}
	for _, t := range at {
		seen = max(seen, t)
	}
	return
}

// joinRun: repeated joins of a fresh newcomer host; each leaves again
// (goodbye) before the next.
func joinRun(ctx context.Context, o Options, c *cluster, rng *rand.Rand, res *NResult) error {
	var fromDial, fromConn, membersSee, half, bytes []float64
	for range o.JoinTrials {
		v, tr, err := c.visitor(ctx)
		if err != nil {
			return err
		}
		_, b0, _ := c.sentBytes()
		vb0 := v.bw.GetBandwidthTotals().TotalOut
		t0, first, sees, seen, err := c.enter(ctx, o, rng, v, tr)
		sleepCtx(ctx, o.settle())
		_, b1, _ := c.sentBytes()
		bytes = append(bytes, float64(b1-b0+v.bw.GetBandwidthTotals().TotalOut-vb0))
		res.Join.Trials++
		if err == nil {
			res.Join.Complete++
			fromDial = append(fromDial, ms(sees-t0))
			half = append(half, ms(tr.halfAt()-t0))
			o.logf("  join: newcomer saw half after %.0f ms, all %d after %.0f ms; all saw it after %.0f ms", ms(tr.halfAt()-t0), len(c.nodes), ms(sees-t0), ms(seen-t0))
			fromConn = append(fromConn, ms(sees-first))
			membersSee = append(membersSee, ms(seen-t0))
		} else {
			o.logf("join trial: %v", err)
		}
		// Goodbye, then wait until every member dropped the newcomer.
		wl := newWatchRec(c.all(), leftOf(room.PeerID(v.h.ID())))
		c.watch.Store(wl)
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = v.room.Leave(lctx)
		cancel()
		v.close()
		if _, ok := wl.wait(ctx, c.roomCfg.Timeout+c.roomCfg.HeartbeatInterval+5*time.Second); !ok {
			o.logf("join trial: not every member dropped the newcomer after its goodbye")
		}
		c.watch.Store(nil)
		sleepCtx(ctx, o.settle())
	}
	for _, b := range bytes {
		res.Join.Bytes += b / float64(len(bytes))
	}
	res.Join.FromDial = dist(fromDial)
	res.Join.Half = dist(half)
	res.Join.FromConnect = dist(fromConn)
	res.Join.MembersSee = dist(membersSee)
	return nil
}

// crashRun: a visitor joins (dialling JoinDegree members), then its host is
// closed without a goodbye; every member must drop it.
func crashRun(ctx context.Context, o Options, c *cluster, rng *rand.Rand, res *NResult) error {
	cfg := c.roomCfg
	res.Crash.Bound = cfg.Timeout + cfg.HeartbeatInterval
	// A silence removal comes at least Timeout - 1.1×HeartbeatInterval after
	// the crash (the last heartbeat was at most 1.1 intervals before it);
	// anything earlier was the PeerDown hint + failed probe.
	probeLimit := cfg.Timeout - cfg.HeartbeatInterval*11/10
	var nb, others, every []float64
	for range o.CrashTrials {
		v, tr, err := c.visitor(ctx)
		if err != nil {
			return err
		}
		if _, _, _, _, err := c.enter(ctx, o, rng, v, tr); err != nil {
			v.close()
			return fmt.Errorf("crash victim: %w", err)
		}
		sleepCtx(ctx, o.settle())
		pv := room.PeerID(v.h.ID())
		direct := make(map[int]bool)
		for j := range c.nodes {
			direct[j] = c.connectedTo(j, v.h.ID())
		}
		wl := newWatchRec(c.all(), leftOf(pv))
		c.watch.Store(wl)
		t0 := c.now()
		v.crash()
		at, ok := wl.wait(ctx, res.Crash.Bound+10*time.Second)
		c.watch.Store(nil)
		v.close()
		res.Crash.Trials++
		if ok {
			res.Crash.Complete++
		}
		res.Crash.Missing += len(c.nodes) - len(at)
		var last time.Duration
		for j, t := range at {
			d := t - t0
			last = max(last, d)
			if direct[j] {
				nb = append(nb, ms(d))
			} else {
				others = append(others, ms(d))
			}
			if d < probeLimit {
				res.Crash.ViaProbe++
			} else {
				res.Crash.ViaTimeout++
			}
		}
		if ok {
			every = append(every, ms(last))
		}
	}
	res.Crash.Neighbours = dist(nb)
	res.Crash.Others = dist(others)
	res.Crash.Everywhere = dist(every)
	return nil
}
