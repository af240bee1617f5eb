package watch

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type ev struct {
	n      int
	lagged int
}

func newBroker(size int) *Broker[ev] {
	return New(size, func(d int) ev { return ev{lagged: d} })
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestEventsArriveInOrder(t *testing.T) {
	b := newBroker(8)
	w := b.Watch()
	for i := 1; i <= 5; i++ {
		b.Publish(ev{n: i})
	}
	for i := 1; i <= 5; i++ {
		got, err := w.Next(ctx(t))
		if err != nil || got.n != i {
			t.Fatalf("event %d: got %+v, %v", i, got, err)
		}
	}
}

func TestWatchIsForwardOnly(t *testing.T) {
	b := newBroker(8)
	b.Publish(ev{n: 1})
	w := b.Watch()
	b.Publish(ev{n: 2})
	got, err := w.Next(ctx(t))
	if err != nil || got.n != 2 {
		t.Fatalf("got %+v, %v; want the event published after Watch", got, err)
	}
}

func TestSlowWatcherGetsLaggedAtTheGapAndNeverBlocksPublisher(t *testing.T) {
	b := newBroker(3)
	slow := b.Watch()
	fast := b.Watch()
	for i := 1; i <= 10; i++ {
		b.Publish(ev{n: i}) // must not block although nobody reads
		if got, err := fast.Next(ctx(t)); err != nil || got.n != i {
			t.Fatalf("fast watcher event %d: %+v %v", i, got, err)
		}
	}
	var seq []ev
	for range 4 {
		got, err := slow.Next(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		seq = append(seq, got)
	}
	want := []ev{{n: 1}, {n: 2}, {n: 3}, {lagged: 7}}
	for i := range want {
		if seq[i] != want[i] {
			t.Fatalf("slow watcher saw %+v, want %+v", seq, want)
		}
	}
	b.Publish(ev{n: 11})
	if got, err := slow.Next(ctx(t)); err != nil || got.n != 11 {
		t.Fatalf("after lag: %+v %v", got, err)
	}
}

func TestCloseDrainsThenErrClosed(t *testing.T) {
	b := newBroker(8)
	w := b.Watch()
	b.Publish(ev{n: 1})
	b.Close()
	b.Close()
	if got, err := w.Next(ctx(t)); err != nil || got.n != 1 {
		t.Fatalf("buffered event lost: %+v %v", got, err)
	}
	if _, err := w.Next(ctx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
	if _, err := b.Watch().Next(ctx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("watch after close: %v", err)
	}
}

func TestNextUnblocksOnPublishAndContext(t *testing.T) {
	b := newBroker(8)
	w := b.Watch()
	done := make(chan ev)
	go func() {
		got, _ := w.Next(context.Background())
		done <- got
	}()
	b.Publish(ev{n: 7})
	select {
	case got := <-done:
		if got.n != 7 {
			t.Fatalf("got %+v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not wake on Publish")
	}
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.Next(c); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	w.Close()
	if _, err := w.Next(ctx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("after watcher Close: %v", err)
	}
}

// CloseWith's final event is never dropped: a full, lagging watcher gets
// its buffer, the lagged report, the final event, then ErrClosed; a
// watcher closed by its consumer gets nothing more; a second close
// delivers nothing.
func TestCloseWithDeliversFinalEventLast(t *testing.T) {
	b := newBroker(2)
	full, full2, gone := b.Watch(), b.Watch(), b.Watch()
	gone.Close()
	for i := 1; i <= 5; i++ {
		b.Publish(ev{n: i})
	}
	if !b.CloseWith(ev{n: 99}) {
		t.Fatal("CloseWith on an open broker reported false")
	}
	if b.CloseWith(ev{n: 100}) {
		t.Fatal("second CloseWith reported true")
	}
	want := []ev{{n: 1}, {n: 2}, {lagged: 3}, {n: 99}}
	for _, w := range []*Watcher[ev]{full, full2} {
		for i, e := range want {
			got, err := w.Next(ctx(t))
			if err != nil || got != e {
				t.Fatalf("event %d: got %+v, %v; want %+v", i, got, err, e)
			}
		}
		if _, err := w.Next(ctx(t)); !errors.Is(err, ErrClosed) {
			t.Fatalf("after the final event: %v, want ErrClosed", err)
		}
	}
	if _, err := gone.Next(ctx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed watcher: %v, want ErrClosed", err)
	}
	if _, err := b.Watch().Next(ctx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("watcher of a closed broker: %v, want ErrClosed", err)
	}
}
