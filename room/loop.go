package room

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/convene-p2p/convene/room/roomnet"
)

// Shell sizes.
const (
	maxFetches   = 8   // concurrent Fetch calls per room
	maxSendQueue = 256 // queued publishes before the oldest droppable one goes
	pollBatch    = 256 // events taken from the network per wake-up
	drainTimeout = 2 * time.Second
)

// request is an API call run on the loop goroutine.
type request struct {
	fn    func(m *machine, now time.Time) error
	ack   bool // reply with the ack of the last message the call published
	reply chan reply
}

type reply struct {
	err error
	ack <-chan error
}

type fetchResult struct {
	req   fetchRequest
	reply roomnet.FetchReply
	err   error
}

func (r *Room) networkEnded(err error) {
	if !errors.Is(err, roomnet.ErrNetworkClosed) {
		r.log.Warn("room: network failed", "room", r.id, "err", err)
	}
}

// pollEvents hands up to pollBatch queued network events to the machine;
// it reports an error if the network ended.
func (r *Room) pollEvents(m *machine) error {
	for range pollBatch {
		ev, ok, err := r.net.TryNext()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		r.handle(m, ev)
	}
	return nil // more are queued: Ready has a value again
}

// loop is the state of the room's loop goroutine (run) beyond the
// machine: the armed timer and the fetches waiting for a slot. Only the
// loop goroutine touches it.
type loop struct {
	r *Room
	m *machine

	timer       <-chan time.Time // fires at armed; nil if none
	armed       time.Time
	fetchQueue  []fetchRequest
	fetchActive int // Fetch goroutines running (at most maxFetches)
}

// run is the room's loop: the only goroutine that touches the machine.
func (r *Room) run(m *machine) {
	l := &loop{r: r, m: m}
	l.flush() // the hello
	ready := r.net.Ready()
	for {
		l.arm()
		var destroy bool
		select {
		case <-r.ctx.Done(): // Close
			r.teardown(m, false)
			return
		case req := <-r.reqs:
			err := req.fn(m, r.clock.Now())
			var ack <-chan error
			destroy, ack = l.flush()
			if !req.ack {
				ack = nil
			}
			req.reply <- reply{err: err, ack: ack}
		case <-ready:
			// Take what is queued (up to pollBatch) before one flush:
			// under load, one snapshot per batch rather than per message.
			if err := r.pollEvents(m); err != nil {
				if r.ctx.Err() == nil {
					r.networkEnded(err)
				}
				r.teardown(m, false)
				return
			}
			destroy, _ = l.flush()
		case res := <-r.fetchRes:
			l.fetchActive--
			m.fetched(r.clock.Now(), res.req, res.reply, res.err)
			destroy, _ = l.flush()
		case <-l.timer:
			l.timer, l.armed = nil, time.Time{}
			m.tick(r.clock.Now())
			destroy, _ = l.flush()
		}
		if destroy { // linger over
			r.teardown(m, true)
			return
		}
	}
}

// arm sets the timer for the machine's next deadline, unless it is
// already armed for an earlier one.
func (l *loop) arm() {
	if d, ok := l.m.nextDeadline(); ok && (l.armed.IsZero() || d.Before(l.armed)) {
		l.armed = d
		l.timer = l.r.clock.After(max(d.Sub(l.r.clock.Now()), 0))
	}
}

// flush carries out the machine's outputs; it reports whether the room
// must be torn down, and returns the ack of the last publish.
func (l *loop) flush() (destroy bool, ack <-chan error) {
	r, m := l.r, l.m
	out := m.take()
	// The snapshot first: a consumer that sees an event reads a state at
	// least as new.
	r.view.Store(m.view(r.view.Load()))
	for _, msg := range out.publish {
		ack = r.send.push(msg)
	}
	evs := out.events
	if out.destroy {
		// RoomDestroyed (the machine's last event) is held back: teardown
		// delivers it once the network is closed and every goroutine has
		// stopped, so a watcher that sees it may join the same room again
		// on the same network at once.
		evs = slices.DeleteFunc(evs, func(ev Event) bool { return ev.Type == RoomDestroyed })
	}
	r.hub.emit(evs)
	l.fetchQueue = append(l.fetchQueue, out.fetches...)
	l.startFetches()
	return out.destroy, ack
}

// startFetches starts queued fetches while fewer than maxFetches run.
func (l *loop) startFetches() {
	for l.fetchActive < maxFetches && len(l.fetchQueue) > 0 {
		req := l.fetchQueue[0]
		l.fetchQueue = l.fetchQueue[1:]
		l.fetchActive++
		l.r.wg.Add(1)
		go l.r.runFetch(req)
	}
}

// handle feeds one network event to the machine.
func (r *Room) handle(m *machine, ev roomnet.Event) {
	now := r.clock.Now()
	switch ev.Kind {
	case roomnet.EventMessage:
		m.receive(now, ev.From, ev.Msg, ev.Signed)
	case roomnet.EventPeerUp:
		m.peerUp(now, ev.From)
	case roomnet.EventPeerDown:
		m.peerDown(now, ev.From)
	case roomnet.EventFetch:
		// Another peer's Fetch: our own state and the members' signed
		// messages while joined, a refusal otherwise. The reply has room
		// for the answer; the loop never waits for the network goroutine.
		var a roomnet.FetchAnswer
		a.Served, a.OK = m.serve(now)
		select {
		case ev.Reply <- a:
		default:
		}
	}
}

// teardown destroys the room. After a graceful end (linger over) queued
// publishes (a goodbye) are still handed to the network first. Then every
// goroutine is stopped, the network closed (closeNet), the goroutines waited for, and
// only then the watchers told (RoomDestroyed, on every destroy path: the
// flush that ended the room held it back) and Done closed.
func (r *Room) teardown(m *machine, graceful bool) {
	if graceful {
		r.send.drain(r.ctx, drainTimeout)
	}
	r.cancel()
	err := r.closeNet(graceful) // also unblocks a Fetch that ignores ctx
	r.wg.Wait()
	m.destroy()
	r.view.Store(m.view(r.view.Load()))
	r.hub.emit(m.take().events)
	r.hub.close()
	if err != nil && !errors.Is(err, roomnet.ErrNetworkClosed) {
		r.closeErr = fmt.Errorf("room: close network: %w", err)
	}
	close(r.done)
}

// runFetch runs one Fetch and reports to the loop.
func (r *Room) runFetch(req fetchRequest) {
	defer r.wg.Done()
	timeout := r.cfg.fetchTimeout()
	if req.purpose == fetchProbe {
		timeout = r.cfg.probeTimeout()
	}
	ctx, cancel := context.WithTimeout(r.ctx, timeout)
	rep, err := r.net.Fetch(ctx, req.peer)
	cancel()
	if err != nil {
		r.log.Debug("room: fetch failed", "room", r.id, "peer", logPeer(req.peer), "probe", req.purpose == fetchProbe, "err", err)
	}
	select {
	case r.fetchRes <- fetchResult{req: req, reply: rep, err: err}:
	case <-r.ctx.Done():
	}
}

// do runs fn on the loop and returns its error.
func (r *Room) do(fn func(m *machine, now time.Time) error) error {
	rep, err := r.call(fn, false)
	if err != nil {
		return err
	}
	return rep.err
}

func (r *Room) call(fn func(m *machine, now time.Time) error, ack bool) (reply, error) {
	req := request{fn: fn, ack: ack, reply: make(chan reply, 1)}
	select {
	case r.reqs <- req:
	case <-r.done:
		return reply{}, ErrClosed
	case <-r.ctx.Done():
		return reply{}, ErrClosed
	}
	return <-req.reply, nil
}
