package room

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/convene-p2p/convene/room/roomnet"
)

// gracefulNet is the bus's network with a graceful close
// (roomnet.Shutdowner), as the gossip package's topic has: it records the
// calls, and its close fails with closeErr if set.
type gracefulNet struct {
	*fakeNet
	closeErr error

	mu          sync.Mutex
	shutdowns   int
	closes      int
	shutdownCtx context.Context
}

var _ roomnet.Shutdowner = (*gracefulNet)(nil)

func (n *gracefulNet) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	n.shutdowns++
	n.shutdownCtx = ctx
	n.mu.Unlock()
	err := n.close()
	if ctx.Err() != nil {
		return errors.Join(ctx.Err(), err)
	}
	return err
}

func (n *gracefulNet) Close() error {
	n.mu.Lock()
	n.closes++
	n.mu.Unlock()
	return n.close()
}

func (n *gracefulNet) close() error {
	_ = n.fakeNet.Close()
	return n.closeErr
}

func (n *gracefulNet) calls() (shutdowns, closes int, ctx context.Context) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.shutdowns, n.closes, n.shutdownCtx
}

func newGracefulRoom(t *testing.T, b *bus, peer string, closeErr error) (*Room, *gracefulNet) {
	t.Helper()
	net := &gracefulNet{fakeNet: b.join(PeerID(peer)), closeErr: closeErr}
	r, err := New("lobby", Identity{Peer: PeerID(peer), Name: "name-" + peer}, shellConfig(), net)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r, net
}

// Shutdown says goodbye (others see reason left), closes the network
// gracefully with Shutdown's ctx and destroys the room at once, without
// the linger that follows Leave.
func TestRoomShutdownSaysGoodbyeAndDestroysAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		a, net := newGracefulRoom(t, b, "a", nil)
		c := newRoom(t, b, "c", shellConfig())
		synctest.Wait()
		w := c.Watch()
		defer w.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		if err := a.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Shutdown took %v of virtual time: it waited for the linger", d)
		}
		mustBeDestroyed(t, a, "Shutdown")
		if ev := next(t, w, time.Millisecond, isType(MemberLeft, "a")); ev.Reason != ReasonLeft {
			t.Errorf("c saw a go with reason %v, want left", ev.Reason)
		}
		if k := net.sent(); len(k) == 0 || k[len(k)-1] != roomnet.KindLeave {
			t.Errorf("published %v, want the goodbye last", k)
		}
		shutdowns, closes, nctx := net.calls()
		if shutdowns != 1 || closes != 0 {
			t.Errorf("network: %d Shutdown, %d Close; want 1, 0", shutdowns, closes)
		}
		if dl, ok := nctx.Deadline(); !ok || !dl.Equal(start.Add(time.Minute)) {
			t.Errorf("network Shutdown's ctx deadline %v %v, want Shutdown's (%v)", dl, ok, start.Add(time.Minute))
		}
	})
}

// Shutdown with a ctx that has ended is Close plus ctx's error: no
// goodbye (the other member sees reason timeout), destroyed at once.
func TestRoomShutdownWithAnEndedCtxIsCloseWithItsError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		a, net := newGracefulRoom(t, b, "a", nil)
		c := newRoom(t, b, "c", shellConfig())
		synctest.Wait()
		w := c.Watch()
		defer w.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := a.Shutdown(ctx); err != context.Canceled {
			t.Fatalf("Shutdown(ended ctx) = %v, want context.Canceled", err)
		}
		mustBeDestroyed(t, a, "Shutdown")
		if slices.Contains(net.sent(), roomnet.KindLeave) {
			t.Errorf("published %v: a goodbye despite the ended ctx", net.sent())
		}
		if ev := next(t, w, shellConfig().Timeout, isType(MemberLeft, "a")); ev.Reason != ReasonTimeout {
			t.Errorf("c saw a go with reason %v, want timeout (no goodbye)", ev.Reason)
		}
	})
}

// The first Close or Shutdown decides the result; every later call of
// either returns it, a network close error included.
func TestRoomCloseAndShutdownReturnTheFirstResult(t *testing.T) {
	boom := errors.New("boom")
	for _, first := range []string{"Close", "Shutdown"} {
		t.Run(first, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBus()
				a, _ := newGracefulRoom(t, b, "a", boom)
				ctx := context.Background()
				var got error
				if first == "Close" {
					got = a.Close()
				} else {
					got = a.Shutdown(ctx)
				}
				if !errors.Is(got, boom) {
					t.Fatalf("%s = %v, want the network's close error", first, got)
				}
				var wg sync.WaitGroup
				errs := make([]error, 4)
				for i := range errs {
					wg.Go(func() {
						if i%2 == 0 {
							errs[i] = a.Close()
						} else {
							errs[i] = a.Shutdown(ctx)
						}
					})
				}
				wg.Wait()
				for i, err := range errs {
					if err != got {
						t.Errorf("later call %d = %v, want the first result %v", i, err, got)
					}
				}
			})
		})
	}
}

// Shutdown after Leave sends no second goodbye and ends the linger at
// once; the end of a linger closes the network gracefully too, bounded.
func TestRoomShutdownAfterLeaveAndLingerEndCloseTheNetworkGracefully(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		a, net := newGracefulRoom(t, b, "a", nil)
		if err := a.Leave(context.Background()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := a.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown after Leave: %v", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Shutdown after Leave took %v of virtual time: it waited for the linger", d)
		}
		leaves := 0
		for _, k := range net.sent() {
			if k == roomnet.KindLeave {
				leaves++
			}
		}
		if leaves != 1 {
			t.Errorf("%d goodbyes published, want 1", leaves)
		}

		l, lnet := newGracefulRoom(t, b, "l", nil)
		if err := l.Leave(context.Background()); err != nil {
			t.Fatal(err)
		}
		<-l.Done() // the linger runs out
		if shutdowns, closes, ctx := lnet.calls(); shutdowns != 1 || closes != 0 || ctx == nil {
			t.Errorf("after the linger: %d Shutdown, %d Close of the network; want 1, 0", shutdowns, closes)
		} else if _, ok := ctx.Deadline(); !ok {
			t.Error("the network Shutdown after the linger is unbounded")
		}
	})
}
