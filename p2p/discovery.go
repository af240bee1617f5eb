package p2p

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Discovery timing. Constants, not tunables: they are the behaviour
// documented in doc.go.
const (
	// connectTimeout bounds one dial to a discovered or bootstrap peer.
	connectTimeout = 10 * time.Second

	// Bootstrap: retry with backoff while the routing table is empty, then
	// check it every bootstrapCheck (a bootstrap node may restart).
	bootstrapMinBackoff = 100 * time.Millisecond
	bootstrapMaxBackoff = 5 * time.Second
	bootstrapCheck      = 30 * time.Second

	// Advertise: retry with backoff until the first success (it fails while
	// the routing table is empty), re-advertise once after
	// readvertiseEarly (the network may have been tiny at the first try),
	// then every TTL/2.
	advertiseMinBackoff = 100 * time.Millisecond
	advertiseMaxBackoff = 5 * time.Second
	readvertiseEarly    = 30 * time.Second

	// provideValidity is how long this host keeps provider records others
	// store with it: 3 h instead of the DHT's 48 h, so a peer that stopped
	// rendezvousing stops being found within hours. Live advertisers renew
	// every TTL/2 = 90 min, well inside it.
	provideValidity = 3 * time.Hour

	// FindPeers: every findFast until findFastPeriod after the first
	// successful advertisement, then every findSlow.
	findFast       = 500 * time.Millisecond
	findFastPeriod = 10 * time.Second
	findSlow       = 30 * time.Second
	findTimeout    = 20 * time.Second
)

// mdnsNotifee receives mDNS results. The mdns package calls
// HandlePeerFound in a new goroutine per entry, possibly after Close.
type mdnsNotifee Host

func (n *mdnsNotifee) HandlePeerFound(info peer.AddrInfo) {
	h := (*Host)(n)
	if info.ID == h.h.ID() || len(info.Addrs) == 0 {
		return
	}
	if !h.enter() {
		return
	}
	defer h.wg.Done()
	h.found("mdns", "", info.ID)
	if h.connected(info.ID) {
		h.keep(info.ID, info.Addrs)
		return
	}
	// A peer that answers mDNS is on the LAN now: dial it even if the
	// swarm backs off from addresses that failed during a partition.
	ctx, cancel := context.WithTimeout(network.WithForceDirectDial(h.ctx, "convene: found by mDNS"), connectTimeout)
	defer cancel()
	if err := h.h.Connect(ctx, info); err != nil {
		log.Debugw("mDNS: connect failed", "peer", info.ID, "err", err)
		return
	}
	h.keep(info.ID, info.Addrs)
	log.Debugw("mDNS: connected", "peer", info.ID)
}

func (h *Host) found(source, ns string, p peer.ID) {
	if h.hooks != nil && h.hooks.peerFound != nil {
		h.hooks.peerFound(source, ns, p)
	}
}

// wait sleeps for d or until ctx is done; it reports whether ctx is still live.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// bootstrapLoop keeps the DHT routing table non-empty: while it is empty
// it dials the bootstrap peers and asks the DHT to refresh, with a short
// backoff (the DHT's own retry waits two minutes).
func (h *Host) bootstrapLoop() {
	defer h.wg.Done()
	ctx := h.ctx
	backoff := bootstrapMinBackoff
	wasEmpty := true
	for {
		if h.dht.RoutingTable().Size() == 0 {
			wasEmpty = true
			h.dialBootstrap(ctx)
			_ = h.dht.Bootstrap(ctx) // triggers a refresh; never fails
			if !wait(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, bootstrapMaxBackoff)
			continue
		}
		if wasEmpty {
			// The first peers are in: refresh now to fill the table
			// rather than at the next periodic refresh.
			wasEmpty = false
			backoff = bootstrapMinBackoff
			log.Debugw("DHT bootstrapped", "peers", h.dht.RoutingTable().Size())
			_ = h.dht.Bootstrap(ctx)
		}
		// The healer kicks when a kept peer is lost: check now rather
		// than at the next bootstrapCheck, and redial bootstrap peers
		// that are gone.
		t := time.NewTimer(bootstrapCheck)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-h.bootKick:
			t.Stop()
			h.dialBootstrap(ctx)
		}
	}
}

// dialBootstrap dials every bootstrap peer not yet connected, in parallel,
// and returns when all dials are done.
func (h *Host) dialBootstrap(ctx context.Context) {
	var wg sync.WaitGroup
	for _, b := range h.boot {
		if h.connected(b.ID) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, connectTimeout)
			defer cancel()
			if err := h.h.Connect(cctx, b); err != nil {
				log.Debugw("bootstrap: connect failed", "peer", b.ID, "err", err)
				return
			}
			h.keep(b.ID, b.Addrs)
		}()
	}
	wg.Wait()
}

// Rendezvous advertises this host under namespace ns in the DHT and
// periodically looks up other peers advertising ns, connecting to them.
// ns is used verbatim (hashed into a DHT key); choose it so that it does
// not collide with other applications on the same DHT.
//
// Advertising retries with a short backoff until the routing table has
// peers, then repeats at half the record TTL. Lookups run every 0.5 s for
// the first 10 s after the first advertisement, then every 30 s, and at
// once (then every 4 s) while a kept peer is lost (see [Host.Keep]).
//
// stop ends the loops and waits for them; it is idempotent. It does not
// close connections already made, and provider records already stored in
// the DHT cannot be withdrawn: they expire on their own (within 3 h), so
// others may still find and dial this host for a while. With the DHT off,
// or after Close, Rendezvous does nothing and stop is a no-op.
func (h *Host) Rendezvous(ns string) (stop func()) {
	if h.dht == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(h.ctx)
	var wg sync.WaitGroup
	advertised := make(chan struct{})
	start := func(f func()) {
		wg.Add(1)
		if !h.goTracked(func() { defer wg.Done(); f() }) {
			wg.Done()
		}
	}
	start(func() { h.advertiseLoop(ctx, ns, advertised) })
	start(func() { h.findLoop(ctx, ns, advertised) })
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			wg.Wait()
		})
	}
}

// advertiseLoop provides ns in the DHT; it closes advertised after the
// first success.
func (h *Host) advertiseLoop(ctx context.Context, ns string, advertised chan<- struct{}) {
	backoff := advertiseMinBackoff
	first := true
	for {
		ttl, err := h.disc.Advertise(ctx, ns)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Debugw("rendezvous: advertise failed; retrying", "ns", ns, "in", backoff, "err", err)
			if !wait(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, advertiseMaxBackoff)
			continue
		}
		backoff = advertiseMinBackoff
		next := ttl / 2
		if first {
			first = false
			close(advertised)
			log.Debugw("rendezvous: advertised", "ns", ns, "ttl", ttl)
			next = min(next, readvertiseEarly)
		}
		if !wait(ctx, next) {
			return
		}
	}
}

// findLoop looks up ns and connects to the peers found. The healer kicks
// it (a lookup at once) while a kept peer is lost.
func (h *Host) findLoop(ctx context.Context, ns string, advertised <-chan struct{}) {
	kick := make(chan struct{}, 1)
	h.healMu.Lock()
	h.kicks[kick] = struct{}{}
	h.healMu.Unlock()
	defer func() {
		h.healMu.Lock()
		delete(h.kicks, kick)
		h.healMu.Unlock()
	}()
	var fastUntil time.Time // zero until the first advertisement
	for {
		if fastUntil.IsZero() {
			select {
			case <-advertised:
				fastUntil = time.Now().Add(findFastPeriod)
			default:
			}
		}
		h.findRound(ctx, ns)
		if ctx.Err() != nil {
			return
		}
		if fastUntil.IsZero() {
			// Not advertised yet: look again soon, and at once when our own
			// advertisement lands (the others' usually land around then).
			t := time.NewTimer(findFast)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-advertised:
				fastUntil = time.Now().Add(findFastPeriod)
			case <-t.C:
			case <-kick:
			}
			t.Stop()
			continue
		}
		interval := findFast
		if time.Now().After(fastUntil) {
			interval = findSlow
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-kick:
			t.Stop()
		}
	}
}

// findRound runs one FindPeers query and dials what it finds, waiting for
// the dials (each bounded by connectTimeout) before returning.
func (h *Host) findRound(ctx context.Context, ns string) {
	qctx, cancel := context.WithTimeout(ctx, findTimeout)
	defer cancel()
	ch, err := h.disc.FindPeers(qctx, ns, discovery.Limit(100))
	if err != nil {
		log.Debugw("rendezvous: find failed", "ns", ns, "err", err)
		return
	}
	var dials sync.WaitGroup
	for info := range ch {
		if info.ID == h.h.ID() || info.ID == "" {
			continue // the DHT returns our own provider record
		}
		h.found("rendezvous", ns, info.ID)
		if h.connected(info.ID) {
			h.keep(info.ID, info.Addrs)
			continue
		}
		dials.Add(1)
		go func() {
			defer dials.Done()
			h.dialFound(ctx, ns, info)
		}()
	}
	dials.Wait()
	if ctx.Err() == nil && h.hooks != nil && h.hooks.findDone != nil {
		h.hooks.findDone(ns)
	}
}

// dialFound connects to a peer found by rendezvous, resolving its
// addresses through the DHT when the provider record carried none.
func (h *Host) dialFound(ctx context.Context, ns string, info peer.AddrInfo) {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if len(info.Addrs) == 0 && len(h.h.Peerstore().Addrs(info.ID)) == 0 {
		found, err := h.dht.FindPeer(cctx, info.ID)
		if err != nil {
			log.Debugw("rendezvous: no addresses for peer", "ns", ns, "peer", info.ID, "err", err)
			return
		}
		info = found
	}
	// The DHT has just said the peer is in the room: dial it even if the
	// swarm backs off from its addresses (dials that failed while it was
	// unreachable).
	if err := h.h.Connect(network.WithForceDirectDial(cctx, "convene: found by rendezvous"), info); err != nil {
		log.Debugw("rendezvous: connect failed", "ns", ns, "peer", info.ID, "err", err)
		return
	}
	h.keep(info.ID, info.Addrs)
	log.Debugw("rendezvous: connected", "ns", ns, "peer", info.ID)
}
