// Package watch is the forward-only event fan-out shared by room and repo:
// a Broker publishes events to any number of Watchers without ever blocking
// the publisher. Each Watcher has a bounded buffer; when a consumer lags and
// its buffer is full, further events are dropped and counted, and the next
// Next after the buffer drains reports the count once (through the lagged
// constructor) so the consumer knows to re-query state.
package watch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// ErrClosed is returned by Next once the broker or the watcher is closed and
// every buffered event has been read.
var ErrClosed = errors.New("watch: closed")

// Broker fans events out to watchers. The zero value is not usable; use New.
type Broker[T any] struct {
	size   int
	lagged func(dropped int) T

	mu     sync.Mutex
	subs   map[*Watcher[T]]struct{}
	closed bool

	dropped, lags atomic.Uint64 // over every watcher, for Stats
}

// New returns a broker whose watchers buffer up to size events each (at
// least 1). lagged builds the event reported after drops.
func New[T any](size int, lagged func(dropped int) T) *Broker[T] {
	if size < 1 {
		size = 1
	}
	return &Broker[T]{size: size, lagged: lagged, subs: make(map[*Watcher[T]]struct{})}
}

// Watch returns a watcher that sees every event published from now on.
// Watching a closed broker returns a watcher whose Next returns ErrClosed.
func (b *Broker[T]) Watch() *Watcher[T] {
	w := &Watcher[T]{b: b, notify: make(chan struct{}, 1)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		w.closed = true
		return w
	}
	b.subs[w] = struct{}{}
	return w
}

// Publish hands ev to every watcher without blocking.
func (b *Broker[T]) Publish(ev T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for w := range b.subs {
		w.push(ev, b.size)
	}
}

// Stats returns how many events were dropped for lagging watchers so far
// (one per watcher per event) and how many lagged reports were delivered.
func (b *Broker[T]) Stats() (dropped, lags uint64) { return b.dropped.Load(), b.lags.Load() }

// Close ends every watcher: Next returns the buffered events, then ErrClosed.
// It is idempotent.
func (b *Broker[T]) Close() { b.close(nil) }

// CloseWith ends every watcher with a final event that is never dropped:
// Next returns the buffered events, the lagged report if events were
// dropped, then final, then ErrClosed. It reports whether it closed the
// broker (false if it was already closed: final is not delivered).
func (b *Broker[T]) CloseWith(final T) bool { return b.close(&final) }

func (b *Broker[T]) close(final *T) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.closed = true
	for w := range b.subs {
		w.end(final)
	}
	clear(b.subs)
	return true
}

// Watcher receives a broker's events in publish order. Safe for concurrent use.
type Watcher[T any] struct {
	b      *Broker[T]
	notify chan struct{}

	mu      sync.Mutex
	buf     []T
	dropped int
	final   *T // delivered after buf and the lagged report, then ErrClosed
	closed  bool
}

func (w *Watcher[T]) push(ev T, size int) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	// Once events were dropped, keep dropping until the consumer has drained
	// the buffer, so the lagged report sits exactly where the gap is.
	if w.dropped > 0 || len(w.buf) >= size {
		w.dropped++
		w.b.dropped.Add(1)
	} else {
		w.buf = append(w.buf, ev)
	}
	w.mu.Unlock()
	w.wake()
}

func (w *Watcher[T]) end(final *T) {
	w.mu.Lock()
	if !w.closed {
		w.closed, w.final = true, final
	}
	w.mu.Unlock()
	w.wake()
}

func (w *Watcher[T]) wake() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// Next returns the next event, blocking until one arrives, ctx is done, or
// the watcher is closed and drained (ErrClosed). After drops it returns the
// broker's lagged event once, when the buffer has drained.
func (w *Watcher[T]) Next(ctx context.Context) (T, error) {
	for {
		w.mu.Lock()
		if len(w.buf) > 0 {
			ev := w.buf[0]
			var zero T
			w.buf[0] = zero
			w.buf = w.buf[1:]
			if len(w.buf) == 0 {
				w.buf = nil
			}
			w.mu.Unlock()
			return ev, nil
		}
		if w.dropped > 0 && w.b.lagged != nil {
			n := w.dropped
			w.dropped = 0
			w.mu.Unlock()
			w.b.lags.Add(1)
			return w.b.lagged(n), nil
		}
		if w.final != nil {
			ev := *w.final
			w.final = nil
			w.mu.Unlock()
			return ev, nil
		}
		closed := w.closed
		w.mu.Unlock()
		if closed {
			var zero T
			return zero, ErrClosed
		}
		select {
		case <-w.notify:
		case <-ctx.Done():
			var zero T
			return zero, ctx.Err()
		}
	}
}

// Close stops this watcher; buffered events are discarded. Idempotent.
func (w *Watcher[T]) Close() {
	w.b.mu.Lock()
	delete(w.b.subs, w)
	w.b.mu.Unlock()
	w.mu.Lock()
	w.closed = true
	w.buf = nil
	w.dropped = 0
	w.final = nil
	w.mu.Unlock()
	w.wake()
}
