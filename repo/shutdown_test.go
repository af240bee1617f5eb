package repo_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"go.uber.org/goleak"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/gossip"
	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
	"github.com/convene-p2p/convene/storage"
)

// pair starts two repos on loopback, connected, both in room id, each
// seeing the other; it returns b's Repo watcher (created after that).
func pair(t *testing.T, id string) (a, b *repo.Repo, wb *repo.Watcher) {
	t.Helper()
	a = newRepo(t, func(c *repo.Config) { c.Name = "A" })
	b = newRepo(t, func(c *repo.Config) { c.Name = "B" })
	ra, rb := join(t, a, id), join(t, b, id)
	if err := a.Connect(context.Background(), b.Addrs()[0].String()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, wait, "A and B see each other", func() bool { return len(ra.Members()) == 2 && len(rb.Members()) == 2 })
	wb = b.Watch()
	t.Cleanup(wb.Close)
	return a, b, wb
}

// leftEvent waits for b's MemberLeft about p in room id.
func leftEvent(t *testing.T, w *repo.Watcher, id string, p room.PeerID) repo.Event {
	t.Helper()
	for {
		ev := nextEvent(t, w)
		if ev.Type == repo.MemberLeft && ev.Room == id && ev.Member.Peer == p {
			return ev
		}
	}
}

// Repo.Shutdown says goodbye in every joined room: the other member sees
// the Repo's peer leave with reason left.
func TestShutdownSaysGoodbye(t *testing.T) {
	a, _, wb := pair(t, "bye")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if ev := leftEvent(t, wb, "bye", a.Self().Peer); ev.Reason != room.ReasonLeft {
		t.Errorf("B saw A (Shutdown) go with reason %v, want left", ev.Reason)
	}
}

// Repo.Close stops at once, without a goodbye: the other member sees the
// Repo's peer go with reason timeout (when its closed connections are
// noticed), not left. Before, Close sent goodbyes (bounded by 2 s).
func TestCloseSaysNoGoodbye(t *testing.T) {
	a, _, wb := pair(t, "bye")
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if ev := leftEvent(t, wb, "bye", a.Self().Peer); ev.Reason != room.ReasonTimeout {
		t.Errorf("B saw A (Close) go with reason %v, want timeout", ev.Reason)
	}
}

// Shutdown with a ctx that has ended returns at once with ctx's error, as
// Close does the rest: no goodbye (the other member sees reason timeout).
func TestShutdownWithAnEndedCtxSaysNoGoodbye(t *testing.T) {
	a, _, wb := pair(t, "bye")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Shutdown(ctx); err != context.Canceled {
		t.Fatalf("Shutdown(ended ctx) = %v, want context.Canceled", err)
	}
	if ev := leftEvent(t, wb, "bye", a.Self().Peer); ev.Reason != room.ReasonTimeout {
		t.Errorf("B saw A go with reason %v, want timeout (no goodbye)", ev.Reason)
	}
}

// Shutdown with a ctx that has ended still releases everything: no
// goroutine of the Repo (rooms, router, document sync, host) is left.
func TestShutdownWithAnEndedCtxLeavesNoGoroutine(t *testing.T) {
	baseline := goleak.IgnoreCurrent()
	r, err := repo.New(context.Background(), repo.LocalConfig())
	if err != nil {
		t.Fatal(err)
	}
	join(t, r, "one")
	join(t, r, "two")
	if _, err := r.Doc(context.Background(), "notes"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	if err := r.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Errorf("Shutdown(expired ctx) = %v, want context.DeadlineExceeded", err)
	}
	goleak.VerifyNone(t, baseline)
}

// A Close during a Shutdown cuts it short: here the Shutdown waits for a
// goodbye acknowledgement that the other peer never sends (its goodbye
// handler hangs; the wait would end by itself after 2 s, with nil). The
// Close ends that wait at once; Shutdown and Close both return the
// Shutdown's result, context.Canceled.
func TestCloseDuringShutdownCutsItShort(t *testing.T) {
	a, b, _ := pair(t, "bye")
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	stuck := func(s network.Stream) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		_ = s.Reset()
	}
	for _, p := range []protocol.ID{gossip.LeaveProtocol, gossip.LeaveProtocolV1} {
		b.Host().SetStreamHandler(p, stuck)
	}
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before B's Close (cleanups run last first)

	res := make(chan error, 1)
	go func() { res <- a.Shutdown(context.Background()) }()
	select {
	case <-entered:
	case <-time.After(wait):
		t.Fatal("A's goodbye never reached B's goodbye handler")
	}
	closed := a.Close()
	shut := <-res
	if !errors.Is(shut, context.Canceled) {
		t.Errorf("Shutdown cut short by Close = %v, want context.Canceled", shut)
	}
	if closed != shut {
		t.Errorf("Close = %v, want the Shutdown's result %v", closed, shut)
	}
	once.Do(func() { close(release) })
}

// The first Close or Shutdown decides the result; every later call of
// either returns it. Here the documents' final save fails (the caller's
// store was closed under the Repo); before, a second Close returned nil.
func TestCloseAndShutdownReturnTheFirstResult(t *testing.T) {
	for _, first := range []string{"Close", "Shutdown"} {
		t.Run(first, func(t *testing.T) {
			st, err := storage.OpenBolt(filepath.Join(t.TempDir(), "docs.bolt"), storage.BoltOptions{})
			if err != nil {
				t.Fatal(err)
			}
			r := newRepo(t, func(c *repo.Config) {
				c.Storage = st
				c.Docs = doc.Options{SaveDelay: time.Hour} // the change is saved only at the end
			})
			h, err := r.Doc(context.Background(), "notes")
			if err != nil {
				t.Fatal(err)
			}
			if err := h.Change(func(tx *doc.Tx) error { return tx.Set(doc.Path{"title"}, "x") }); err != nil {
				t.Fatal(err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			var got error
			if first == "Close" {
				got = r.Close()
			} else {
				got = r.Shutdown(context.Background())
			}
			if got == nil {
				t.Fatalf("%s = nil, want the failed save's error", first)
			}
			for i, err := range []error{r.Close(), r.Shutdown(context.Background()), r.Close()} {
				if err != got {
					t.Errorf("later call %d = %v, want the first result %v", i, err, got)
				}
			}
		})
	}
}

// The room config fields (Clock, Seed, WatchBuffer, formerly functional
// options of room.New) reach rooms joined through the Repo: here
// WatchBuffer, through Config.Room. A watcher of 1 event lags at the
// second.
func TestRoomConfigWatchBufferReachesRoomsThroughTheRepo(t *testing.T) {
	r := newRepo(t, func(c *repo.Config) { c.Room.WatchBuffer = 1 })
	rm := join(t, r, "small")
	w := rm.Watch()
	defer w.Close()
	for _, k := range []string{"a", "b", "c"} {
		if err := rm.Set(k, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if ev, err := w.Next(ctx); err != nil || ev.Type != room.PresenceChanged {
		t.Fatalf("first event %+v %v, want presence-changed", ev, err)
	}
	if ev, err := w.Next(ctx); err != nil || ev.Type != room.Lagged || ev.Dropped != 2 {
		t.Fatalf("second event %+v %v, want lagged with 2 dropped (WatchBuffer 1)", ev, err)
	}
}
