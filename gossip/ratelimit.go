package gossip

import (
	"math"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// limiters is a token bucket per key (an author, or a pre-check's
// (room, forwarder, author)), bounded in size. A bucket that has refilled
// completely is equivalent to a fresh one, so such entries are dropped
// when the table is full; if none can be dropped, a new key is answered
// whenFull until some can.
type limiters[K comparable] struct {
	rate     rate.Limit
	burst    int
	max      int
	whenFull bool

	mu sync.Mutex
	m  map[K]*rate.Limiter
}

func newLimiters[K comparable](r float64, burst, max int, whenFull bool) *limiters[K] {
	return &limiters[K]{rate: rate.Limit(r), burst: burst, max: max, whenFull: whenFull, m: make(map[K]*rate.Limiter)}
}

// allow takes one token from k's bucket at now; a new bucket gets scale
// times the rate and burst.
func (l *limiters[K]) allow(k K, scale int, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.m[k]
	if lim == nil {
		if len(l.m) >= l.max {
			l.sweep(now)
			if len(l.m) >= l.max {
				return l.whenFull
			}
		}
		lim = rate.NewLimiter(rate.Limit(scale)*l.rate, scale*l.burst)
		l.m[k] = lim
	}
	return lim.AllowN(now, 1)
}

func (l *limiters[K]) sweep(now time.Time) {
	for k, lim := range l.m {
		if lim.TokensAt(now) >= float64(lim.Burst()) {
			delete(l.m, k)
		}
	}
}

// rateViolations counts, per peer, the over-rate messages it sent us
// directly (as their author), decaying by decayPerSecond. It feeds
// GossipSub's application-specific score (P5): a topic validator cannot
// Reject an over-rate message without also penalising honest relays, because
// pubsub penalises every peer that delivers a copy of a rejected message and
// token buckets at different relays do not agree exactly. So over-rate
// messages are Ignored, and only their author is penalised, here.
type rateViolations struct {
	decayPerSecond float64
	max            int

	mu sync.Mutex
	m  map[peer.ID]decaying
}

type decaying struct {
	v  float64
	at time.Time
}

func (d decaying) value(now time.Time, decayPerSecond float64) float64 {
	dt := now.Sub(d.at).Seconds()
	if dt <= 0 {
		return d.v
	}
	return d.v * math.Pow(decayPerSecond, dt)
}

func newRateViolations(decayPerSecond float64, max int) *rateViolations {
	return &rateViolations{decayPerSecond: decayPerSecond, max: max, m: make(map[peer.ID]decaying)}
}

func (r *rateViolations) add(p peer.ID, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[p]; !ok && len(r.m) >= r.max {
		for q, d := range r.m {
			if d.value(now, r.decayPerSecond) < 0.1 {
				delete(r.m, q)
			}
		}
	}
	r.m[p] = decaying{v: r.m[p].value(now, r.decayPerSecond) + 1, at: now}
}

// score is P5 for p: rateWeight × violations².
func (r *rateViolations) score(p peer.ID) float64 {
	r.mu.Lock()
	d, ok := r.m[p]
	r.mu.Unlock()
	if !ok {
		return 0
	}
	v := d.value(time.Now(), r.decayPerSecond)
	return rateWeight * v * v
}
