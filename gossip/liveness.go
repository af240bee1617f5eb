package gossip

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/room/roomnet"
)

// Liveness probing of room peers (docs/PROTOCOL.md 2.8a, issue 14.3): a
// peer whose process is frozen (SIGSTOP, a suspended VM) keeps its
// connections open, as the kernel still acknowledges TCP, so no PeerDown
// comes and a room would drop it only at Timeout (30 s by default).
//
// The Router therefore checks every peer it shares a joined room with
// (subscribed, with a GossipSub stream) that it has heard nothing from for
// AliveInterval: no pubsub RPC, no liveness check of ours answered, no
// liveness check of its own received. The check is the one of connWatch
// (a multistream negotiation of AliveProtocol, on every connection to the
// peer at once; one answer is enough), bounded by aliveTimeout. A peer
// that misses aliveMisses checks in a row, with nothing received from it
// meanwhile, is reported to each room it is in as EventPeerDown: the room
// then probes it (Fetch, min(1s, Timeout)) and drops it only if that fails
// too (restart grace, suspect: room/doc.go). Under traffic no check is
// sent at all (every RPC is a sign of life).
//
// A check whose own timer fired late, or that overlapped a stall of this
// process (the loop's tick came late: this process was stopped or starved
// itself), proves nothing and is not counted: a process that resumes after
// a SIGSTOP must not report its live peers.
const (
	// DefaultAliveInterval is Config.AliveInterval's default.
	DefaultAliveInterval = 750 * time.Millisecond
	// aliveTimeout bounds one check.
	aliveTimeout = 600 * time.Millisecond
	// aliveMisses checks missed in a row report the peer down.
	aliveMisses = 2
	// aliveTick is the probing loop's period: a missed check is followed
	// by the next one within a tick.
	aliveTick = 250 * time.Millisecond
	// aliveLate: a check that ended this much later than its timeout, or
	// a tick this much later than due, means this process was stalled.
	aliveLate = 300 * time.Millisecond
)

type liveness struct {
	r    *Router
	idle time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	heard   map[peer.ID]time.Time // last sign of life (monotonic)
	peers   map[peer.ID]*aliveState
	stalled time.Time // the end of the latest stall of this process
}

type aliveState struct {
	misses  int
	probing bool
	started time.Time // the latest check's start
}

func newLiveness(r *Router, idle time.Duration) *liveness {
	l := &liveness{r: r, idle: idle, heard: make(map[peer.ID]time.Time), peers: make(map[peer.ID]*aliveState)}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// start starts the probing loop (once the handlers are set).
func (l *liveness) start() {
	if l.idle > 0 {
		l.wg.Add(1)
		go l.loop()
	}
}

func (l *liveness) close() {
	l.cancel()
	l.wg.Wait()
}

// alive records a sign of life of p (an RPC, a check of ours answered, a
// check of its own).
func (l *liveness) alive(p peer.ID) {
	if l.idle <= 0 {
		return
	}
	now := time.Now()
	l.mu.Lock()
	l.heard[p] = now
	if s := l.peers[p]; s != nil {
		s.misses = 0
	}
	l.mu.Unlock()
}

// roomPeers returns the peers of every open Topic, each with the Topics
// it is in.
func (l *liveness) roomPeers() map[peer.ID][]*Topic {
	r := l.r
	r.mu.Lock()
	topics := make([]*Topic, 0, len(r.topics))
	for _, t := range r.topics {
		topics = append(topics, t)
	}
	r.mu.Unlock()
	out := make(map[peer.ID][]*Topic)
	for _, t := range topics {
		if t.closed.Load() {
			continue
		}
		for _, p := range t.pt.ListPeers() {
			out[p] = append(out[p], t)
		}
	}
	return out
}

func (l *liveness) loop() {
	defer l.wg.Done()
	tick := time.NewTicker(aliveTick)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		late := now.Sub(last) > aliveTick+aliveLate
		last = now
		peers := l.roomPeers()
		l.mu.Lock()
		if late {
			// This process was stopped or starved: what it did not hear
			// meanwhile proves nothing; start over.
			l.stalled = now
			for p := range l.heard {
				l.heard[p] = now
			}
			for _, s := range l.peers {
				s.misses = 0
			}
		}
		for p := range l.peers {
			if _, ok := peers[p]; !ok {
				delete(l.peers, p)
			}
		}
		if len(l.heard) > 2*len(peers)+64 {
			for p := range l.heard {
				if _, ok := peers[p]; !ok {
					delete(l.heard, p)
				}
			}
		}
		for p, ts := range peers {
			s := l.peers[p]
			if s == nil {
				s = &aliveState{}
				l.peers[p] = s
				if _, ok := l.heard[p]; !ok {
					l.heard[p] = now // new to us: give it a full interval
				}
			}
			if s.probing || now.Sub(l.heard[p]) < l.idle {
				continue
			}
			if s.misses >= aliveMisses && now.Sub(s.started) < l.idle {
				continue // reported: keep checking, but at the idle pace
			}
			s.probing, s.started = true, now
			l.wg.Add(1)
			go l.check(p, ts, now)
		}
		l.mu.Unlock()
	}
}

// check runs one liveness check of p and counts a miss.
func (l *liveness) check(p peer.ID, ts []*Topic, start time.Time) {
	defer l.wg.Done()
	ok := l.answers(p)
	end := time.Now()
	l.mu.Lock()
	s := l.peers[p]
	if s == nil || l.ctx.Err() != nil {
		l.mu.Unlock()
		return
	}
	s.probing = false
	if ok {
		l.heard[p] = end
		s.misses = 0
		l.mu.Unlock()
		return
	}
	if l.heard[p].After(start) || !l.stalled.Before(start) || end.Sub(start) > aliveTimeout+aliveLate {
		// Heard from meanwhile, or this process stalled during the check.
		l.mu.Unlock()
		return
	}
	s.misses++
	report := s.misses%aliveMisses == 0
	l.mu.Unlock()
	l.r.stats[cAliveMisses].Add(1)
	if !report {
		return
	}
	l.r.stats[cUnresponsive].Add(1)
	l.r.log.Debug("peer does not answer liveness checks: reporting it down", "peer", p, "misses", aliveMisses)
	for _, t := range ts {
		if !t.closed.Load() {
			t.q.pushPeer(p, roomnet.EventPeerDown)
		}
	}
}

// answers reports whether some connection to p answers a check within
// aliveTimeout. No connection (closed meanwhile) is an answer: GossipSub's
// PeerLeave reports that.
func (l *liveness) answers(p peer.ID) bool {
	conns := l.r.h.Network().ConnsToPeer(p)
	if len(conns) == 0 {
		return true
	}
	res := make(chan bool, len(conns))
	for _, c := range conns {
		go func(c network.Conn) { res <- l.r.conns.answers(l.ctx, c, aliveTimeout) }(c)
	}
	for range conns {
		if <-res {
			return true
		}
	}
	return false
}
