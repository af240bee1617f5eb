package room

import "time"

// pacer paces the deltas that publish local writes. Deltas are paced like
// a token bucket of rate 1/interval and capacity 2 (the generic cell rate
// algorithm: tat is when the bucket would be full again), and never closer
// together than interval/2. So a room publishes at most 2 + T/interval
// deltas in any span T — one per interval in a sustained burst — but an
// update that comes a little early after the previous one (an app ticking
// at exactly 1/interval, with jitter) is sent at once instead of waiting
// for the window to end: a strict one-per-window rule phase-locks such an
// app to up to a whole interval of extra latency.
//
// The machine asks allowed when a local write comes in: if it is not
// before allowed, the delta goes out at once (leading edge); else it is
// pending until then (trailing edge), carrying whatever is latest then.
type pacer struct {
	interval time.Duration // Config.PublishInterval
	pending  deadline      // trailing-edge delta due; set while local writes wait
	last     time.Time     // last delta published; zero if none
	tat      time.Time     // theoretical arrival time of the next delta (GCRA)
}

// allowed is the earliest time the next delta may go out (zero: now).
func (p *pacer) allowed() time.Time {
	if p.last.IsZero() {
		return time.Time{}
	}
	at := p.tat.Add(-p.interval)
	if spaced := p.last.Add(p.interval / 2); spaced.After(at) {
		at = spaced
	}
	return at
}

// sent records a delta published at now; nothing is pending after it.
func (p *pacer) sent(now time.Time) {
	p.pending.clear()
	p.last = now
	if p.tat.Before(now) {
		p.tat = now
	}
	p.tat = p.tat.Add(p.interval)
}

// reset forgets the pacing history (a new incarnation starts afresh).
func (p *pacer) reset() { *p = pacer{interval: p.interval} }
