// Package stop is the Shutdown(ctx) / Close() pair of net/http, shared by
// the types that have both (repo.Repo, room.Room, gossip.Router and
// gossip.Topic): Shutdown is the graceful stop (goodbyes, flushes), bounded
// by its context; Close is immediate. Either stops the type once; every
// call of either, then or later, returns the result of that one stop.
package stop

import (
	"context"
	"errors"
	"sync"
)

// Once runs a type's stop once. The zero value is ready to use.
type Once struct {
	mu     sync.Mutex
	done   chan struct{} // nil until the stop starts; closed when it ended
	cancel context.CancelFunc
	err    error
}

// Func is a type's stop. graceful is true for Shutdown: the stop may then
// wait, bounded by ctx, for what is graceful; ctx is also cancelled when a
// Close (or a later Shutdown whose own ctx ends first) cuts it short. For
// Close, graceful is false and the stop must not wait for the network.
type Func func(ctx context.Context, graceful bool) error

// Shutdown runs stop gracefully with ctx if nothing has stopped yet, and
// returns its result. If a stop is already running, Shutdown waits for it;
// should ctx end first, it cuts that stop short (as Close does) and still
// returns its result.
func (o *Once) Shutdown(ctx context.Context, stop Func) error {
	return o.do(ctx, true, stop)
}

// Close runs stop immediately if nothing has stopped yet, and returns its
// result. If a graceful stop is running, Close cuts it short (its context
// is cancelled, so its waits end at once) and returns its result.
func (o *Once) Close(stop Func) error {
	return o.do(nil, false, stop)
}

func (o *Once) do(ctx context.Context, graceful bool, stop Func) error {
	o.mu.Lock()
	if o.done == nil {
		o.done = make(chan struct{})
		if ctx == nil {
			ctx = context.Background()
		}
		sctx, cancel := context.WithCancel(ctx)
		o.cancel = cancel
		o.mu.Unlock()
		err := stop(sctx, graceful)
		cancel()
		o.err = err
		close(o.done)
		return err
	}
	done, cancel := o.done, o.cancel
	o.mu.Unlock()
	switch {
	case !graceful:
		cancel()
	case ctx != nil:
		select {
		case <-done:
		case <-ctx.Done():
			cancel()
		}
	}
	<-done
	return o.err // written before done was closed
}

// Started reports whether a stop has begun (or ended).
func (o *Once) Started() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.done != nil
}

// Result is what a stop returns: ctx's error first if the graceful part
// was cut short (late, or a lower layer's result in errs says so), then
// the other errors of errs, nil ones left out. Lower layers' Shutdown
// results are split (Split): their context errors count as late, once.
// A lone error is returned as it is (so that err == ctx.Err() for a stop
// that failed only by its context).
func Result(ctx context.Context, late bool, errs ...error) error {
	var out []error
	var ctxErr error
	for _, err := range errs {
		l, rest := split(err)
		if l != nil {
			late = true
			if ctxErr == nil {
				ctxErr = l
			}
		}
		out = append(out, rest...)
	}
	if late {
		if err := ctx.Err(); err != nil {
			ctxErr = err
		}
		if ctxErr == nil {
			ctxErr = context.Canceled // cannot happen: late means a context ended
		}
		out = append([]error{ctxErr}, out...)
	}
	switch len(out) {
	case 0:
		return nil
	case 1:
		return out[0]
	}
	return errors.Join(out...)
}

// Split separates a Shutdown result into whether it was cut short by its
// context and the other errors, joined (nil if none).
func Split(err error) (late bool, rest error) {
	l, r := split(err)
	switch len(r) {
	case 0:
		return l != nil, nil
	case 1:
		return l != nil, r[0]
	}
	return l != nil, errors.Join(r...)
}

// split flattens err one level (a join, as Result returns) and takes out
// the context errors: it returns the first of them and the rest.
func split(err error) (ctxErr error, rest []error) {
	if err == nil {
		return nil, nil
	}
	parts := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	}
	for _, e := range parts {
		if e == nil {
			continue
		}
		if IsContext(e) {
			if ctxErr == nil {
				ctxErr = e
			}
			continue
		}
		rest = append(rest, e)
	}
	return ctxErr, rest
}

// IsContext reports whether err is a context's error (cancelled or past
// its deadline), possibly wrapped.
func IsContext(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
