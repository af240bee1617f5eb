package gossip

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/convene-p2p/convene/room/roomnet"
)

// Router.Shutdown does not discard own messages still queued in
// GossipSub: a burst published right before it reaches the peer in full,
// and Shutdown returns nil, well before its ctx ends (it waits no longer
// than needed). The ctx bound is the 1 s that Router.Close waited at most
// before Shutdown existed.
func TestRouterShutdownDeliversQueuedPublishes(t *testing.T) {
	const n = 50
	a, b := newNode(t, Config{}), newNode(t, Config{})
	ma := join(t, a, "lobby")
	tb, err := b.r.Join("lobby")
	if err != nil {
		t.Fatal(err)
	}
	connect(t, a.h, b.h)
	eventually(t, 5*time.Second, "b reaches a", func() bool { return len(tb.Peers()) == 1 })
	for i := range n {
		if err := tb.Publish(context.Background(), roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: fmt.Appendf(nil, "m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	// Every message is routed and written quickly, so Shutdown must not
	// run into its ctx (a loaded machine may still take a while).
	if err := b.r.Shutdown(ctx); err != nil {
		t.Errorf("Router.Shutdown = %v after %v, want nil: it ran into its ctx", err, time.Since(start))
	}
	t.Logf("Router.Shutdown took %v", time.Since(start))
	got := make(map[string]bool)
	ma.waitFor(t, 5*time.Second, "all of b's messages", func(ev roomnet.Event) bool {
		if ev.Kind == roomnet.EventMessage && peer.ID(ev.From) == b.id() {
			got[string(ev.Msg.Payload)] = true
		}
		return len(got) == n
	})
}

// Router.Close returns the close errors of the Topics it closes, joined
// (before, it dropped them), and every later Close or Shutdown returns the
// same. A Topic's close fails here because its validator was removed
// behind its back.
func TestRouterCloseReturnsTopicCloseErrorsEveryTime(t *testing.T) {
	for _, first := range []string{"Close", "Shutdown"} {
		t.Run(first, func(t *testing.T) {
			n := newNode(t, Config{})
			ta, err := n.r.Join("a")
			if err != nil {
				t.Fatal(err)
			}
			tb, err := n.r.Join("b")
			if err != nil {
				t.Fatal(err)
			}
			for _, tp := range []*Topic{ta, tb} {
				if err := n.r.ps.UnregisterTopicValidator(tp.name); err != nil {
					t.Fatal(err)
				}
			}
			var got error
			if first == "Close" {
				got = n.r.Close()
			} else {
				got = n.r.Shutdown(context.Background())
			}
			for _, id := range []string{"a", "b"} {
				if want := fmt.Sprintf("gossip: close %q", id); got == nil || !strings.Contains(got.Error(), want) {
					t.Errorf("Router.%s = %v, want it to report %s", first, got, want)
				}
			}
			for i, err := range []error{n.r.Close(), n.r.Shutdown(context.Background()), n.r.Close()} {
				if err != got {
					t.Errorf("later call %d = %v, want the first result %v", i, err, got)
				}
			}
			for _, tp := range []*Topic{ta, tb} {
				terr := tp.Close()
				if terr == nil || got == nil || !strings.Contains(got.Error(), terr.Error()) {
					t.Errorf("Topic.Close after the Router's = %v, want its own first result (part of %v)", terr, got)
				}
				if again := tp.Shutdown(context.Background()); again != terr {
					t.Errorf("Topic.Shutdown after Close = %v, want %v", again, terr)
				}
			}
		})
	}
}

// Shutdown with a ctx that has already ended returns at once with ctx's
// error and leaves no goroutine of the Router or its Topics running.
func TestShutdownWithAnEndedCtxReturnsItsErrorAndLeaksNothing(t *testing.T) {
	a, b := newHost(t), newHost(t)
	connect(t, a, b)
	baseline := goleak.IgnoreCurrent()
	rb, err := New(context.Background(), b, Config{Params: testParams()})
	if err != nil {
		t.Fatal(err)
	}
	ra, err := New(context.Background(), a, Config{Params: testParams()})
	if err != nil {
		t.Fatal(err)
	}
	ta, err := ra.Join("lobby")
	if err != nil {
		t.Fatal(err)
	}
	tb, err := rb.Join("lobby")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a reaches b", func() bool { return len(ta.Peers()) == 1 })
	if err := ta.Publish(context.Background(), roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ta.Shutdown(ctx); err != context.Canceled {
		t.Errorf("Topic.Shutdown(ended ctx) = %v, want context.Canceled", err)
	}
	if err := ra.Shutdown(ctx); err != context.Canceled {
		t.Errorf("Router.Shutdown(ended ctx) = %v, want context.Canceled", err)
	}
	if err := tb.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rb.Close(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, baseline)
}
