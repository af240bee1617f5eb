package stop

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// counted is a stop that counts its runs and returns err.
type counted struct {
	mu       sync.Mutex
	runs     int
	graceful bool
	err      error
}

func (c *counted) stop(_ context.Context, graceful bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.runs++
	c.graceful = graceful
	return c.err
}

func TestEveryCallReturnsTheFirstResult(t *testing.T) {
	for _, first := range []string{"Close", "Shutdown"} {
		t.Run(first, func(t *testing.T) {
			var o Once
			c := &counted{err: errors.New("boom")}
			var got error
			if first == "Close" {
				got = o.Close(c.stop)
			} else {
				got = o.Shutdown(context.Background(), c.stop)
			}
			if got != c.err {
				t.Fatalf("first %s = %v, want %v", first, got, c.err)
			}
			if c.graceful != (first == "Shutdown") {
				t.Errorf("first %s ran the stop with graceful=%v", first, c.graceful)
			}
			var wg sync.WaitGroup
			errs := make([]error, 6)
			for i := range errs {
				wg.Go(func() {
					if i%2 == 0 {
						errs[i] = o.Close(c.stop)
					} else {
						errs[i] = o.Shutdown(context.Background(), c.stop)
					}
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != c.err {
					t.Errorf("later call %d = %v, want the first result", i, err)
				}
			}
			if c.runs != 1 {
				t.Errorf("the stop ran %d times, want 1", c.runs)
			}
		})
	}
}

// blocking is a graceful stop that waits on its ctx, as a goodbye bounded
// by it does, and returns what Result makes of it.
func blocking(started chan<- struct{}) Func {
	return func(ctx context.Context, graceful bool) error {
		if !graceful {
			return nil
		}
		close(started)
		<-ctx.Done()
		return Result(ctx, true)
	}
}

func TestCloseCutsAShutdownShort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var o Once
		started := make(chan struct{})
		res := make(chan error, 1)
		go func() { res <- o.Shutdown(context.Background(), blocking(started)) }()
		<-started
		closed := o.Close(func(context.Context, bool) error { t.Error("Close ran a second stop"); return nil })
		shut := <-res
		if !errors.Is(shut, context.Canceled) {
			t.Errorf("Shutdown cut short by Close = %v, want context.Canceled", shut)
		}
		if closed != shut {
			t.Errorf("Close = %v, want the Shutdown's result %v", closed, shut)
		}
	})
}

func TestALaterShutdownIsBoundedByItsOwnCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var o Once
		started := make(chan struct{})
		res := make(chan error, 1)
		go func() { res <- o.Shutdown(context.Background(), blocking(started)) }()
		<-started
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		later := o.Shutdown(ctx, nil) // never run: the first stop is running
		if d := time.Since(start); d != time.Second {
			t.Errorf("later Shutdown returned after %v, want its ctx's 1s (virtual time)", d)
		}
		if first := <-res; later != first || !errors.Is(first, context.Canceled) {
			t.Errorf("later Shutdown = %v, first = %v; want the same, context.Canceled", later, first)
		}
	})
}

func TestResult(t *testing.T) {
	boom, bang := errors.New("boom"), errors.New("bang")
	expired, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel()
	live := context.Background()
	lower := Result(expired, true, boom) // a lower layer's result
	for _, tc := range []struct {
		name     string
		ctx      context.Context
		late     bool
		errs     []error
		want     []error // errors.Is each
		wantSame error   // == (a lone error is returned as it is)
	}{
		{name: "nothing", ctx: live, wantSame: nil},
		{name: "nils", ctx: live, errs: []error{nil, nil}, wantSame: nil},
		{name: "one error", ctx: live, errs: []error{nil, boom}, wantSame: boom},
		{name: "late only", ctx: expired, late: true, wantSame: context.DeadlineExceeded},
		{name: "late and errors", ctx: expired, late: true, errs: []error{boom, bang}, want: []error{context.DeadlineExceeded, boom, bang}},
		{name: "a lower layer's late counts", ctx: expired, errs: []error{lower, bang}, want: []error{context.DeadlineExceeded, boom, bang}},
		{name: "a wrapped ctx error counts", ctx: expired, errs: []error{fmt.Errorf("room: leave: %w", context.DeadlineExceeded)}, wantSame: context.DeadlineExceeded},
		{name: "not late, ended ctx", ctx: expired, errs: []error{boom}, wantSame: boom},
	} {
		got := Result(tc.ctx, tc.late, tc.errs...)
		if tc.want == nil {
			if got != tc.wantSame {
				t.Errorf("%s: Result = %v, want %v", tc.name, got, tc.wantSame)
			}
			continue
		}
		for _, w := range tc.want {
			if !errors.Is(got, w) {
				t.Errorf("%s: Result = %v, want it to hold %v", tc.name, got, w)
			}
		}
		late, rest := Split(got)
		if late != (tc.late || tc.name == "a lower layer's late counts") || rest == nil {
			t.Errorf("%s: Split(%v) = %v, %v", tc.name, got, late, rest)
		}
		if errors.Is(rest, context.DeadlineExceeded) {
			t.Errorf("%s: Split's rest %v holds the ctx error", tc.name, rest)
		}
	}
}
