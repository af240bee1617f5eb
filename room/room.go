package room

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/convene-p2p/convene/internal/stop"
	"github.com/convene-p2p/convene/room/roomnet"
)

// Room is one joined room: the local peer's presence in it, the other
// members and their presence, and the room's events. Create it with New.
// All methods are safe for concurrent use.
type Room struct {
	id    string
	self  Identity
	cfg   Config
	net   roomnet.Network
	clock Clock
	log   *slog.Logger
	hub   *hub

	view  atomic.Pointer[view]
	stats *counters // the machine's, read by Stats

	reqs     chan request
	fetchRes chan fetchResult

	ctx    context.Context // cancelled to stop every goroutine
	cancel context.CancelFunc
	send   *sender
	wg     sync.WaitGroup // sender, fetchers; the loop waits for them

	done     chan struct{} // closed when the room is destroyed
	closeErr error         // set before done is closed

	stop stop.Once // Shutdown, Close
	// netCtx is the ctx of Shutdown, set before it stops the loop: the
	// teardown then shuts the network down with it (closeNet).
	netCtx atomic.Pointer[context.Context]
	// netLate: the network's Shutdown was cut short by its ctx (set by
	// the teardown before done is closed).
	netLate bool
}

// New joins room id as self over net and returns the live room (status
// Joined): it starts the room's goroutines, publishes the hello and serves
// Fetch requests. On success the room owns net and closes it when it is
// destroyed; on error net is untouched and still the caller's.
// self.Peer must be the network's local peer. The zero Config means
// DefaultConfig.
func New(id string, self Identity, cfg Config, net roomnet.Network) (*Room, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	if self.Peer == "" {
		return nil, errors.New("room: self has no peer ID")
	}
	if net == nil {
		return nil, errors.New("room: nil network")
	}
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if c, ok := net.(roomnet.Checker); ok {
		if cfg, err = cfg.agreeLimits(c.Limits()); err != nil {
			return nil, err
		}
		if err := c.CheckFull(self.Peer, self.Name, self.Meta); err != nil {
			return nil, fmt.Errorf("room: config: %w", err)
		}
	}
	seed := cfg.Seed
	if seed == 0 {
		var b [8]byte
		_, _ = crand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}
	now := cfg.Clock.Now()
	m, err := newMachine(now, id, self, cfg, nextEpoch(now), seed)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Room{
		id:       id,
		self:     cloneIdentity(self),
		cfg:      cfg,
		net:      net,
		clock:    cfg.Clock,
		log:      cfg.Logger,
		hub:      newHub(id, cfg.WatchBuffer),
		reqs:     make(chan request),
		fetchRes: make(chan fetchResult),
		ctx:      ctx,
		cancel:   cancel,
		send:     newSender(),
		done:     make(chan struct{}),
		stats:    m.stats,
	}
	r.view.Store(m.view(nil))
	r.wg.Add(1)
	go r.send.run(ctx, &r.wg, net, r.log)
	go r.run(m)
	return r, nil
}

// epochs makes epochs grow strictly within this process, whatever the
// clock does; across restarts they grow with the wall clock (unix ms).
var lastEpoch atomic.Uint64

func nextEpoch(now time.Time) uint64 {
	want := uint64(max(now.UnixMilli(), 1))
	for {
		last := lastEpoch.Load()
		e := max(want, last+1)
		if lastEpoch.CompareAndSwap(last, e) {
			return e
		}
	}
}

// ID returns the room ID.
func (r *Room) ID() string { return r.id }

// Self returns the local peer's identity in this room.
func (r *Room) Self() Identity { return cloneIdentity(r.self) }

// Status returns the room's lifecycle state.
func (r *Room) Status() Status { return r.view.Load().status }

// Done is closed when the room is destroyed: after Close, or when the
// linger after Leave is over.
func (r *Room) Done() <-chan struct{} { return r.done }

// Set sets a key of the local peer's presence. The write is visible to
// Get at once and published to the room within PublishInterval (writes in
// the same window are coalesced; the latest value is always sent). Errors:
// ErrNotJoined, ErrClosed, or a wrapped ephemeral limit error
// (ephemeral.ErrKeyTooLong, ErrValueTooLarge, ErrTooManyKeys).
func (r *Room) Set(key string, value []byte) error {
	return r.do(func(m *machine, now time.Time) error { return m.set(now, key, value, 0) })
}

// SetTTL is Set for a key that vanishes ttl after this write, here and at
// every receiver (each on its own clock), unless written again.
func (r *Room) SetTTL(key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("room: set %q: ttl %v is not positive", key, ttl)
	}
	return r.do(func(m *machine, now time.Time) error { return m.set(now, key, value, ttl) })
}

// SetJSON sets key to the JSON encoding of v.
func (r *Room) SetJSON(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("room: set %q: %w", key, err)
	}
	return r.Set(key, b)
}

// Delete removes a key of the local peer's presence (a versioned
// tombstone). Deleting a missing key is a no-op.
func (r *Room) Delete(key string) error {
	return r.do(func(m *machine, now time.Time) error { return m.del(now, key) })
}

// Get returns a copy of peer's value for key (self included).
func (r *Room) Get(peer PeerID, key string) ([]byte, bool) {
	v, ok := r.view.Load().states[peer][key]
	if !ok {
		return nil, false
	}
	return append([]byte(nil), v...), true
}

// GetJSON decodes peer's value for key into v. It reports false (and no
// error) if there is no such value.
func (r *Room) GetJSON(peer PeerID, key string, v any) (bool, error) {
	b, ok := r.view.Load().states[peer][key]
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return true, fmt.Errorf("room: get %q: %w", key, err)
	}
	return true, nil
}

// State returns a copy of a member's whole presence, or nil if peer is not
// a member.
func (r *Room) State(peer PeerID) map[string][]byte {
	s, ok := r.view.Load().states[peer]
	if !ok {
		return nil
	}
	return cloneState(s)
}

// States returns a copy of every member's presence (self included while
// joined). Members with no keys map to an empty map.
func (r *Room) States() map[PeerID]map[string][]byte {
	v := r.view.Load()
	out := make(map[PeerID]map[string][]byte, len(v.states))
	for p, s := range v.states {
		out[p] = cloneState(s)
	}
	return out
}

func cloneState(s map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(s))
	for k, v := range s {
		out[k] = append([]byte(nil), v...)
	}
	return out
}

// Members returns the current members, sorted by peer ID, the local peer
// included while joined.
func (r *Room) Members() []Identity {
	ms := r.view.Load().members
	out := make([]Identity, len(ms))
	for i, id := range ms {
		out[i] = cloneIdentity(id)
	}
	return out
}

// Broadcast sends payload to everyone in the room, fire and forget: it
// returns once the message is handed to the network (or ctx ends). It is
// not stored; peers that are not in the room now never see it.
func (r *Room) Broadcast(ctx context.Context, payload []byte) error {
	v := r.view.Load()
	switch v.status {
	case Left:
		return ErrNotJoined
	case Closed:
		return ErrClosed
	}
	err := r.net.Publish(ctx, roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: v.epoch, Payload: payload})
	if err != nil {
		if errors.Is(err, roomnet.ErrNetworkClosed) {
			return ErrClosed
		}
		return fmt.Errorf("room: broadcast: %w", err)
	}
	return nil
}

// Watch returns a new forward-only event stream (see Watcher). On a
// destroyed room the watcher is already closed.
func (r *Room) Watch() *Watcher { return r.hub.watch() }

// Leave says goodbye: it publishes the signed leave and waits until it is
// handed to the network (bounded by ctx), stops heartbeats, clears the
// local presence (events PresenceChanged and MemberLeft for self) and
// keeps receiving for Config.Linger, after which the room is destroyed
// (RoomDestroyed, Done). Rejoin during the linger cancels it. Errors:
// ErrNotJoined if already left, ErrClosed, ctx's error if the goodbye was
// not handed over in time (the room has left anyway), or the network's
// publish error.
func (r *Room) Leave(ctx context.Context) error {
	rep, err := r.call(func(m *machine, now time.Time) error { return m.leave(now) }, true)
	if err != nil {
		return err
	}
	if rep.err != nil {
		return rep.err
	}
	return r.waitAck(ctx, rep.ack, "leave")
}

// Rejoin makes the local peer a member again while the room lingers after
// Leave: a new epoch (so others see a fresh incarnation), a hello
// (waited for until handed to the network, bounded by ctx), heartbeats,
// status Joined and MemberJoined for self. Remote presence received during
// the linger is kept. On a joined room it does nothing; on a destroyed
// room it returns ErrClosed.
func (r *Room) Rejoin(ctx context.Context) error {
	rep, err := r.call(func(m *machine, now time.Time) error {
		if m.status != Left {
			return m.rejoin(now, 0) // no-op or ErrClosed
		}
		return m.rejoin(now, nextEpoch(now))
	}, true)
	if err != nil {
		return err
	}
	if rep.err != nil {
		return rep.err
	}
	return r.waitAck(ctx, rep.ack, "rejoin")
}

// waitAck waits until the message behind ack is handed to the network.
func (r *Room) waitAck(ctx context.Context, ack <-chan error, what string) error {
	if ack == nil {
		return nil
	}
	result := func(err error) error {
		if err != nil {
			return fmt.Errorf("room: %s: %w", what, err)
		}
		return nil
	}
	select {
	case err := <-ack:
		return result(err)
	case <-ctx.Done():
		return fmt.Errorf("room: %s: %w", what, ctx.Err())
	case <-r.done:
		select {
		case err := <-ack: // handed over just before the end
			return result(err)
		default:
			return ErrClosed
		}
	}
}

// Shutdown leaves the room gracefully and destroys it: the goodbye as
// Leave sends it (unless the room has left already), waited for until it
// is handed to the network, then, over a network that can close
// gracefully (a roomnet.Shutdowner, such as the gossip package's topic),
// until the network has it on its way; then the room is destroyed as by
// Close. Every wait is bounded by ctx: if ctx ends first, or had ended
// when Shutdown was called (no goodbye is sent then), the room is
// destroyed at once and Shutdown returns ctx's error, joined with any
// other (the goodbye's publish error, the network's close error).
// Shutdown and Close destroy the room once; every later call of either
// returns the first one's result. A Close during a Shutdown cuts its
// waits short.
func (r *Room) Shutdown(ctx context.Context) error {
	return r.stop.Shutdown(ctx, r.shutdown)
}

// Close destroys the room at once, without a goodbye (others drop the
// local peer when it times out, or sooner when its connection closes):
// it stops and waits for every goroutine of the room, closes the network,
// delivers RoomDestroyed and closes Done. It is idempotent and returns the
// same result every time: the network's close error, if any (see
// Shutdown), also when the room was destroyed before (the linger after
// Leave ran out, or the network ended).
func (r *Room) Close() error {
	return r.stop.Close(r.shutdown)
}

// shutdown is the room's stop (Shutdown, Close).
func (r *Room) shutdown(ctx context.Context, graceful bool) error {
	late := false
	var errs []error
	if graceful {
		if late = ctx.Err() != nil; !late {
			err := r.Leave(ctx)
			switch {
			case err == nil, errors.Is(err, ErrNotJoined), errors.Is(err, ErrClosed):
			case stop.IsContext(err):
				late = true
			default:
				errs = append(errs, err)
			}
		}
		r.netCtx.Store(&ctx)
	}
	r.cancel()
	<-r.done
	return stop.Result(ctx, late || r.netLate, append(errs, r.closeErr)...)
}

// closeNet closes the room's network (teardown): with Shutdown's ctx if
// Shutdown is destroying the room, or bounded by drainTimeout after a
// graceful end (the linger after Leave is over), over a network that can
// close gracefully; with Close otherwise. It returns the network's close
// error; a graceful close cut short by its ctx sets netLate.
func (r *Room) closeNet(lingered bool) error {
	s, ok := r.net.(roomnet.Shutdowner)
	if !ok {
		return r.net.Close()
	}
	var ctx context.Context
	p := r.netCtx.Load()
	switch {
	case p != nil:
		ctx = *p
	case lingered:
		c, cancel := context.WithTimeout(context.Background(), drainTimeout)
		defer cancel()
		ctx = c
	default:
		return r.net.Close()
	}
	late, err := stop.Split(s.Shutdown(ctx))
	r.netLate = late && p != nil // after the linger, lateness is only logged
	if late {
		r.log.Debug("room: network shutdown cut short", "room", r.id, "err", ctx.Err())
	}
	return err
}
