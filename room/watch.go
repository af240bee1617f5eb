package room

import (
	"context"
	"errors"

	"github.com/convene-p2p/convene/internal/watch"
)

// hub fans room events out to watchers without ever blocking the room
// loop (internal/watch, shared with repo). RoomDestroyed closes it: that
// event is never dropped and is every watcher's last.
type hub struct {
	room string
	b    *watch.Broker[Event]
}

func newHub(room string, size int) *hub {
	return &hub{room: room, b: watch.New(size, func(n int) Event {
		return Event{Type: Lagged, Room: room, Dropped: n}
	})}
}

func (h *hub) watch() *Watcher { return &Watcher{w: h.b.Watch()} }

// emit hands evs to every watcher, in order. A RoomDestroyed event closes
// the hub: it is delivered even to a full watcher, as its last event.
func (h *hub) emit(evs []Event) {
	for _, ev := range evs {
		if ev.Type == RoomDestroyed {
			h.b.CloseWith(ev)
			return
		}
		h.b.Publish(ev)
	}
}

// close closes the hub as if RoomDestroyed had been emitted (it is
// delivered if it was not yet).
func (h *hub) close() { h.b.CloseWith(Event{Type: RoomDestroyed, Room: h.room}) }

// Watcher is a forward-only, pull-based stream of one room's events, from
// the moment Watch was called. Query state first (Members, States), then
// Watch, then call Next in a loop.
//
// Each watcher buffers up to a fixed number of events (DefaultWatchBuffer
// unless Config.WatchBuffer says otherwise); the room never waits for a
// watcher. When the buffer is full, newer events are dropped and counted;
// once the consumer has read what was buffered, it receives one Lagged
// event with the number dropped at that point, then the events that came
// after the gap. On Lagged, re-read the state you care about. RoomDestroyed
// is never dropped: it is always the last event, after which Next returns
// ErrClosed.
//
// Next and Close are safe to call from any goroutine.
type Watcher struct{ w *watch.Watcher[Event] }

// Next returns the next event, waiting for one until ctx is done. After
// the room is destroyed and the buffered events (the last being
// RoomDestroyed) are read, or after Close, it returns ErrClosed.
func (w *Watcher) Next(ctx context.Context) (Event, error) {
	ev, err := w.w.Next(ctx)
	if errors.Is(err, watch.ErrClosed) {
		return Event{}, ErrClosed
	}
	return ev, err
}

// Close stops the watcher: buffered events are discarded and Next returns
// ErrClosed. It is idempotent.
func (w *Watcher) Close() { w.w.Close() }
