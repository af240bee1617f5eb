package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/convene-p2p/convene/room"
)

type msgKey struct {
	sender int
	seq    uint32
}

type recvKey struct {
	msg  msgKey
	recv int
}

// latRec records publish→receive latency of paced updates: the send time of
// each (sender, seq) and the first arrival at each receiver.
type latRec struct {
	n      int // receivers per update: N-1
	mu     sync.Mutex
	sent   map[msgKey]time.Duration
	got    map[recvKey]bool
	lat    []float64 // ms
	pairs  [][2]int  // (sender, receiver) of lat[i]
	expect int
	deliv  int
	notify chan struct{}
}

func newLatRec(N int) *latRec {
	return &latRec{n: N - 1, sent: make(map[msgKey]time.Duration), got: make(map[recvKey]bool), notify: make(chan struct{}, 1)}
}

// sending registers an update about to be published at t.
func (r *latRec) sending(sender int, seq uint32, t time.Duration) {
	r.mu.Lock()
	r.sent[msgKey{sender, seq}] = t
	r.expect += r.n
	r.mu.Unlock()
}

func (r *latRec) arrived(recv, sender int, seq uint32, t time.Duration) {
	if recv == sender || recv < 0 {
		return
	}
	k := msgKey{sender, seq}
	r.mu.Lock()
	ts, ok := r.sent[k]
	if ok && !r.got[recvKey{k, recv}] {
		r.got[recvKey{k, recv}] = true
		r.lat = append(r.lat, ms(t-ts))
		r.pairs = append(r.pairs, [2]int{sender, recv})
		r.deliv++
	}
	r.mu.Unlock()
	if ok {
		select {
		case r.notify <- struct{}{}:
		default:
		}
	}
}

func (r *latRec) presence(recv, sender int, seq uint32, t time.Duration) {
	r.arrived(recv, sender, seq, t)
}
func (r *latRec) raw(recv, sender int, seq uint32, t time.Duration) { r.arrived(recv, sender, seq, t) }

func (r *latRec) counts() (delivered, expected int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.deliv, r.expect
}

// waitAll waits until every registered update reached every receiver, or d
// passes. It reports whether all arrived.
func (r *latRec) waitAll(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		if dl, ex := r.counts(); dl >= ex {
			return true
		}
		select {
		case <-r.notify:
		case <-timer.C:
			dl, ex := r.counts()
			return dl >= ex
		case <-ctx.Done():
			return false
		}
	}
}

func (r *latRec) samples() []float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]float64(nil), r.lat...)
}

// byHops splits the samples by the hop distance from sender to receiver
// (hops[s][r]); index h of the result holds the samples at distance h.
func (r *latRec) byHops(hops [][]int) [][]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]float64
	for i, p := range r.pairs {
		h := hops[p[0]][p[1]]
		for len(out) <= h {
			out = append(out, nil)
		}
		out[h] = append(out[h], r.lat[i])
	}
	return out
}

// watchRec records, per cluster node, the first room event that matches,
// and is done once every wanted receiver has one.
type watchRec struct {
	match  func(recv int, ev room.Event) bool
	mu     sync.Mutex
	want   map[int]bool
	at     map[int]time.Duration
	reason map[int]room.LeaveReason
	left   int
	done   chan struct{}
}

func newWatchRec(want []int, match func(recv int, ev room.Event) bool) *watchRec {
	w := &watchRec{match: match, want: make(map[int]bool), at: make(map[int]time.Duration), reason: make(map[int]room.LeaveReason), done: make(chan struct{})}
	for _, i := range want {
		w.want[i] = true
	}
	w.left = len(w.want)
	if w.left == 0 {
		close(w.done)
	}
	return w
}

func (w *watchRec) event(recv int, ev room.Event, t time.Duration) {
	if !w.match(recv, ev) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.want[recv] {
		return
	}
	if _, ok := w.at[recv]; ok {
		return
	}
	w.at[recv] = t
	w.reason[recv] = ev.Reason
	w.left--
	if w.left == 0 {
		close(w.done)
	}
}

// wait waits until done or d passes, and returns a copy of the arrival times.
func (w *watchRec) wait(ctx context.Context, d time.Duration) (map[int]time.Duration, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	ok := true
	select {
	case <-w.done:
	case <-timer.C:
		ok = false
	case <-ctx.Done():
		ok = false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[int]time.Duration, len(w.at))
	for k, v := range w.at {
		out[k] = v
	}
	return out, ok && w.left == 0
}

// visitorTracker follows a visitor's own view: the set of peers whose cursor
// it holds; done once it holds want of them.
type visitorTracker struct {
	c    *cluster
	mu   sync.Mutex
	set  map[room.PeerID]bool
	want int
	at   time.Duration
	half time.Duration // when it first held half of want
	done chan struct{}
}

// newVisitorTracker follows the cursors of c's nodes (not of other visitors).
func newVisitorTracker(c *cluster) *visitorTracker {
	return &visitorTracker{c: c, set: make(map[room.PeerID]bool), want: len(c.nodes), done: make(chan struct{})}
}

func (v *visitorTracker) event(_ *node, ev room.Event, t time.Duration) {
	if ev.Type != room.PresenceChanged {
		return
	}
	ch := ev.Change
	if _, ok := v.c.byPeer[ch.Peer]; !ok {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, k := range ch.Added {
		if k == cursorKey {
			v.set[ch.Peer] = true
		}
	}
	for _, k := range ch.Updated {
		if k == cursorKey {
			v.set[ch.Peer] = true
		}
	}
	for _, k := range ch.Removed {
		if k == cursorKey {
			delete(v.set, ch.Peer)
		}
	}
	if ch.Gone {
		delete(v.set, ch.Peer)
	}
	if v.half == 0 && 2*len(v.set) >= v.want {
		v.half = t
	}
	if v.at == 0 && len(v.set) >= v.want {
		v.at = t
		close(v.done)
	}
}

func (v *visitorTracker) halfAt() time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.half
}

func (v *visitorTracker) wait(ctx context.Context, d time.Duration) (time.Duration, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-v.done:
	case <-timer.C:
	case <-ctx.Done():
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.at, v.at != 0
}

// loadRec records the load run without keeping every sample: send times
// per (sender, seq), a latency histogram, applied counts and the last seq
// every receiver holds from every sender.
type loadRec struct {
	sendAt  [][]atomic.Int64 // [sender][seq] send time (ns since start)
	last    [][]atomic.Uint32
	applied atomic.Int64
	hist    *histogram
	win     atomic.Pointer[histogram] // the current one-second window
}

func newLoadRec(N, perSender int) *loadRec {
	r := &loadRec{sendAt: make([][]atomic.Int64, N), last: make([][]atomic.Uint32, N), hist: newHistogram()}
	r.win.Store(newHistogram())
	for i := range N {
		r.sendAt[i] = make([]atomic.Int64, perSender+1)
		r.last[i] = make([]atomic.Uint32, N)
	}
	return r
}

func (r *loadRec) raw(recv, sender int, seq uint32, t time.Duration) {
	r.presence(recv, sender, seq, t)
}

func (r *loadRec) presence(recv, sender int, seq uint32, t time.Duration) {
	if recv < 0 || recv == sender || sender < 0 || sender >= len(r.sendAt) || int(seq) >= len(r.sendAt[sender]) {
		return
	}
	ts := r.sendAt[sender][seq].Load()
	if ts == 0 {
		return // not a load-run update
	}
	r.applied.Add(1)
	r.hist.add(t - time.Duration(ts))
	r.win.Load().add(t - time.Duration(ts))
	l := &r.last[recv][sender]
	for {
		old := l.Load()
		if seq <= old || l.CompareAndSwap(old, seq) {
			break
		}
	}
}
