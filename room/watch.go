package room

import (
	"context"
	"sync"
)

// hub fans room events out to watchers without ever blocking the room
// loop.
type hub struct {
	room string
	size int

	mu       sync.Mutex
	watchers map[*Watcher]struct{}
	closed   bool
}

func newHub(room string, size int) *hub {
	return &hub{room: room, size: size, watchers: make(map[*Watcher]struct{})}
}

func (h *hub) watch() *Watcher {
	w := &Watcher{h: h, limit: h.size, wake: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		w.closed = true
		return w
	}
	h.watchers[w] = struct{}{}
	return w
}

// emit hands evs to every watcher, in order. A RoomDestroyed event closes
// the hub: it is delivered even to a full watcher, as its last event.
func (h *hub) emit(evs []Event) {
	if len(evs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	for _, ev := range evs {
		final := ev.Type == RoomDestroyed
		for w := range h.watchers {
			w.push(ev, final)
		}
		if final {
			h.closed = true
			clear(h.watchers)
			return
		}
	}
}

// close closes the hub as if RoomDestroyed had been emitted (it is
// delivered if it was not yet).
func (h *hub) close() {
	h.emit([]Event{{Type: RoomDestroyed, Room: h.room}})
}

func (h *hub) remove(w *Watcher) {
	h.mu.Lock()
	delete(h.watchers, w)
	h.mu.Unlock()
}

// Watcher is a forward-only, pull-based stream of one room's events, from
// the moment Watch was called. Query state first (Members, States), then
// Watch, then call Next in a loop.
//
// Each watcher buffers up to a fixed number of events (DefaultWatchBuffer
// unless WithWatchBuffer says otherwise); the room never waits for a
// watcher. When the buffer is full, newer events are dropped and counted;
// once the consumer has read what was buffered, it receives one Lagged
// event with the number dropped at that point, then the events that came
// after the gap. On Lagged, re-read the state you care about. RoomDestroyed
// is never dropped: it is always the last event, after which Next returns
// ErrClosed.
//
// Next and Close are safe to call from any goroutine.
type Watcher struct {
	h     *hub
	limit int

	mu     sync.Mutex
	buf    []Event
	closed bool // no more events will be pushed
	wake   chan struct{}
}

// push appends ev, or counts it in a Lagged marker when the buffer is
// full. With final it is appended regardless and the watcher closes.
// Called with the hub locked.
func (w *Watcher) push(ev Event, final bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	switch n := len(w.buf); {
	case final:
		w.buf = append(w.buf, ev)
		w.closed = true
	case n < w.limit:
		w.buf = append(w.buf, ev)
	case w.buf[n-1].Type == Lagged:
		w.buf[n-1].Dropped++
	default:
		// The marker takes one slot beyond the limit, at the gap.
		w.buf = append(w.buf, Event{Type: Lagged, Room: ev.Room, Dropped: 1})
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Next returns the next event, waiting for one until ctx is done. After
// the room is destroyed and the buffered events (the last being
// RoomDestroyed) are read, or after Close, it returns ErrClosed.
func (w *Watcher) Next(ctx context.Context) (Event, error) {
	for {
		w.mu.Lock()
		if len(w.buf) > 0 {
			ev := w.buf[0]
			w.buf[0] = Event{}
			w.buf = w.buf[1:]
			if len(w.buf) == 0 {
				w.buf = nil // let the backing array go
			}
			w.mu.Unlock()
			return ev, nil
		}
		closed := w.closed
		w.mu.Unlock()
		if closed {
			return Event{}, ErrClosed
		}
		select {
		case <-w.wake:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// Close stops the watcher: buffered events are discarded and Next returns
// ErrClosed. It is idempotent.
func (w *Watcher) Close() {
	w.h.remove(w)
	w.mu.Lock()
	w.closed = true
	w.buf = nil
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}
