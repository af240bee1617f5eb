package gossip

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mss "github.com/multiformats/go-multistream"
)

// AliveProtocol answers the liveness check of one connection: its
// multistream negotiation is the whole exchange (the handler closes the
// stream at once). A peer that does not speak it answers "not supported",
// which proves the connection alive just as well.
const AliveProtocol protocol.ID = "/convene/alive/1.0.0"

// staleCheckTimeout bounds the liveness check of an older connection to a
// peer that has just connected again (see connWatch).
const staleCheckTimeout = time.Second

// connWatch handles a peer that connects while an older connection to it
// is still open: a peer that restarted with the same key (same peer ID)
// while its old process is frozen (SIGSTOP, a suspended laptop) or its old
// connection is half-dead. libp2p keeps both connections. GossipSub keeps
// one outbound stream per peer, on the old connection, so our messages
// and our subscriptions go to the frozen process and the new one never
// learns we are in the room; and the host picks the connection for a new
// stream (Fetch, probes) by stream count, so about half of them go to the
// frozen process too and time out.
//
// When a peer has more than one connection after a new one opens, each
// older one is checked (a multistream negotiation of AliveProtocol on
// that connection, at most staleCheckTimeout). If one does not answer,
// every connection to the peer is closed and the peer is dialled again:
// GossipSub on both sides then starts from one fresh connection (closing
// only the stale one would leave GossipSub's view of the peer's
// subscriptions cleared on one side, as it forgets them whenever either of
// its streams with the peer dies, and nothing makes the peer announce them
// again). Two healthy connections (a simultaneous dial) are left alone.
type connWatch struct {
	r *Router

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	checking map[peer.ID]bool
	closing  map[network.Conn]bool // closed by reset: their Disconnected is ours
	closed   bool

	nb *network.NotifyBundle
}

func newConnWatch(r *Router) *connWatch {
	w := &connWatch{r: r, checking: make(map[peer.ID]bool), closing: make(map[network.Conn]bool)}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.nb = &network.NotifyBundle{ConnectedF: w.connected, DisconnectedF: w.disconnected}
	r.h.SetStreamHandler(AliveProtocol, func(s network.Stream) {
		r.live.alive(s.Conn().RemotePeer()) // its own check: a sign of life
		_ = s.Close()
	})
	r.h.Network().Notify(w.nb)
	return w
}

// close stops the watch and waits for checks in progress.
func (w *connWatch) close() {
	w.r.h.Network().StopNotify(w.nb)
	w.r.h.RemoveStreamHandler(AliveProtocol)
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
}

// connected is the network notifee: it runs on the swarm's goroutine and
// must not block.
func (w *connWatch) connected(n network.Network, c network.Conn) {
	p := c.RemotePeer()
	if len(n.ConnsToPeer(p)) < 2 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.checking[p] {
		return
	}
	w.checking[p] = true
	w.wg.Add(1)
	go w.check(p, c)
}

// disconnected is the network notifee for a closed connection. If other
// connections to the peer remain (an old one of a restarted peer that
// closed at last, or one of two that libp2p closed), GossipSub may have
// had a stream on the closed one: it then forgets the peer's
// subscriptions, and its new stream on a remaining connection does not
// bring them back. So the peer's connections are reset as for a stale
// one.
func (w *connWatch) disconnected(n network.Network, c network.Conn) {
	p := c.RemotePeer()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closing[c] {
		delete(w.closing, c)
		return
	}
	if w.closed || w.checking[p] || len(n.ConnsToPeer(p)) == 0 {
		return
	}
	w.checking[p] = true
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer w.done(p)
		w.r.log.Debug("one of several connections to a peer closed: reconnecting", "peer", p)
		w.reset(p)
	}()
}

func (w *connWatch) done(p peer.ID) {
	w.mu.Lock()
	delete(w.checking, p)
	w.mu.Unlock()
}

// check checks every connection to p other than fresh, and resets the
// peer's connections if one of them is stale.
func (w *connWatch) check(p peer.ID, fresh network.Conn) {
	defer w.wg.Done()
	defer w.done(p)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		stale []network.Conn
	)
	for _, c := range w.r.h.Network().ConnsToPeer(p) {
		if c == fresh || c.IsClosed() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !w.alive(c) {
				mu.Lock()
				stale = append(stale, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(stale) == 0 || w.ctx.Err() != nil {
		return
	}
	w.r.stats[cStaleConns].Add(uint64(len(stale)))
	w.r.log.Debug("stale connection to a peer that connected again: reconnecting", "peer", p, "stale", len(stale))
	w.reset(p)
}

// reset closes every connection to p and dials it again (at the addresses
// the peerstore has for it: identify filled them in).
func (w *connWatch) reset(p peer.ID) {
	conns := w.r.h.Network().ConnsToPeer(p)
	w.mu.Lock()
	if len(w.closing) > 1024 {
		clear(w.closing) // Disconnected never came for some: forget them
	}
	for _, c := range conns {
		w.closing[c] = true
	}
	w.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
	defer cancel()
	if err := w.r.h.Connect(ctx, peer.AddrInfo{ID: p}); err != nil {
		w.r.log.Debug("reconnect after a stale connection failed", "peer", p, "err", err)
	}
}

// alive checks one connection: a stream on it and a multistream
// negotiation of AliveProtocol within staleCheckTimeout. Only a check
// that gets no answer in time says stale; a refused stream or protocol is
// an answer.
func (w *connWatch) alive(c network.Conn) bool {
	return w.answers(w.ctx, c, staleCheckTimeout)
}

// answers is alive with the context parent and the bound d.
func (w *connWatch) answers(parent context.Context, c network.Conn, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(parent, d)
	defer cancel()
	s, err := c.NewStream(ctx)
	if err != nil {
		return c.IsClosed() || ctx.Err() == nil // closed meanwhile: nothing to reset for it
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	_ = s.SetDeadline(time.Now().Add(d))
	err = mss.SelectProtoOrFail(AliveProtocol, s)
	if err == nil || errors.As(err, new(mss.ErrNotSupported[protocol.ID])) {
		_ = s.Close()
		return true
	}
	_ = s.Reset()
	if parent.Err() != nil {
		return true
	}
	return ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err)
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}
