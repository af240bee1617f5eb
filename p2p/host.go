package p2p

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	"github.com/libp2p/go-libp2p/config"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/x/rate"
	ma "github.com/multiformats/go-multiaddr"
)

var log = golog.Logger("convene/p2p")

// ErrClosed is returned by operations on a closed Host.
var ErrClosed = errors.New("p2p: host closed")

// Host is a libp2p host with Convene's discovery: mDNS on the LAN and an
// optional Kademlia DHT with per-namespace rendezvous. It is safe for
// concurrent use. Close releases everything it started.
type Host struct {
	h       host.Host
	dht     *dht.IpfsDHT
	disc    *drouting.RoutingDiscovery
	mdns    mdns.Service
	mdnsErr error
	boot    []peer.AddrInfo
	hooks   *hooks

	// mdnsService is the mDNS service name, for the healer's browses.
	mdnsService string
	notify      *network.NotifyBundle

	// The healer's state (heal.go). healMu is taken inside the swarm's
	// notifications: never ask the swarm anything while holding it.
	healMu   sync.Mutex
	kept     map[peer.ID]*kept
	kicks    map[chan struct{}]struct{} // one per running rendezvous lookup loop
	browsing bool                       // an extra mDNS browse is running
	healPoke chan struct{}              // wakes the heal loop (capacity 1)
	bootKick chan struct{}              // wakes the bootstrap loop (capacity 1)

	// ctx is cancelled by Close; every background goroutine derives from it.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // background goroutines; Add only under mu while !closed

	closeOnce sync.Once
	closeErr  error
}

// New creates and starts a host: it listens, starts mDNS (unless
// Config.NoMDNS) and the DHT (per Config.DHT), and begins bootstrapping in
// the background. ctx bounds construction only; the host lives until Close.
//
// An mDNS service that fails to start (for example on a machine without a
// multicast-capable interface) does not fail New; see [Host.MDNSError].
func New(ctx context.Context, cfg Config) (*Host, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("p2p: %w", err)
	}
	s, err := cfg.validate()
	if err != nil {
		return nil, err
	}

	key := cfg.Key
	switch {
	case key != nil:
	case cfg.KeyFile != "":
		if key, err = LoadOrCreateKey(cfg.KeyFile); err != nil {
			return nil, err
		}
	default:
		if key, _, err = crypto.GenerateEd25519Key(rand.Reader); err != nil {
			return nil, fmt.Errorf("p2p: generate key: %w", err)
		}
	}

	var cm *connmgr.BasicConnMgr   // created by finish unless Options bring one
	var rm network.ResourceManager // likewise
	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrs(s.listen...),
	}
	if s.psk != nil {
		opts = append(opts, libp2p.PrivateNetwork(pnet.PSK(s.psk)))
	}
	opts = append(opts, cfg.Options...)
	// finish runs after the caller's options and before libp2p's defaults.
	// Any error here happens before libp2p builds anything, so nothing leaks.
	finish := func(c *config.Config) error {
		if c.PSK != nil {
			kept := c.ListenAddrs[:0:0]
			for _, a := range c.ListenAddrs {
				if pskCompatible(a) {
					kept = append(kept, a)
				}
			}
			if len(kept) == 0 && len(c.ListenAddrs) > 0 {
				return errors.New("no listen address left: QUIC, WebTransport and WebRTC cannot be used with a PSK")
			}
			c.ListenAddrs = kept
		}
		if c.PrometheusRegisterer == nil {
			c.DisableMetrics = true
		}
		if c.ConnManager == nil {
			m, err := connmgr.NewConnManager(s.connLow, s.connHigh)
			if err != nil {
				return err
			}
			cm = m
			c.ConnManager = m
		}
		if c.ResourceManager == nil {
			m, err := newResourceManager()
			if err != nil {
				return err
			}
			rm = m
			c.ResourceManager = m
		}
		return nil
	}
	opts = append(opts, finish)

	lh, err := libp2p.New(opts...)
	if err != nil {
		if cm != nil {
			cm.Close()
		}
		if rm != nil {
			rm.Close() // libp2p closes it only if it failed after taking it
		}
		return nil, fmt.Errorf("p2p: start libp2p host: %w", err)
	}

	hctx, cancel := context.WithCancel(context.Background())
	h := &Host{
		h:           lh,
		boot:        s.bootstrap,
		hooks:       cfg.hooks,
		mdnsService: s.mdnsService,
		kept:        make(map[peer.ID]*kept),
		kicks:       make(map[chan struct{}]struct{}),
		healPoke:    make(chan struct{}, 1),
		bootKick:    make(chan struct{}, 1),
		ctx:         hctx,
		cancel:      cancel,
	}
	h.notify = h.notifiee()
	lh.Network().Notify(h.notify)

	if s.dht != DHTOff {
		mode := dht.ModeServer
		if s.dht == DHTClient {
			mode = dht.ModeClient
		}
		dopts := []dht.Option{
			dht.Mode(mode),
			dht.ProtocolPrefix(protocol.ID(s.dhtPrefix)),
			dht.ProviderManagerOpts(records.ProvideValidity(provideValidity)),
		}
		if len(s.bootstrap) > 0 {
			dopts = append(dopts, dht.BootstrapPeers(s.bootstrap...))
		}
		d, err := dht.New(lh, dopts...)
		if err != nil {
			cancel()
			lh.Close()
			return nil, fmt.Errorf("p2p: start DHT: %w", err)
		}
		h.dht = d
		h.disc = drouting.NewRoutingDiscovery(d)
		for _, b := range s.bootstrap {
			lh.ConnManager().Protect(b.ID, "convene-bootstrap")
		}
		h.wg.Add(1)
		go h.bootstrapLoop()
	}

	if s.mdns {
		svc := mdns.NewMdnsService(lh, s.mdnsService, (*mdnsNotifee)(h))
		if err := svc.Start(); err != nil {
			svc.Close()
			h.mdnsErr = fmt.Errorf("p2p: start mDNS: %w", err)
			log.Warnw("mDNS discovery unavailable", "err", err)
		} else {
			h.healMu.Lock()
			h.mdns = svc
			h.healMu.Unlock()
		}
	}
	h.wg.Add(1)
	go h.healLoop()
	return h, nil
}

// newResourceManager is libp2p's default resource manager (the default
// limits, scaled to the machine) except for its connection rate limiter:
// connections to and from private, link-local and loopback addresses are
// not rate-limited. libp2p exempts only loopback; elsewhere it allows 0.2
// new connections a second per IPv4 address (burst 16) in either
// direction, failed dials included. Peers on a LAN that redial each other
// after a partition, several of them behind one address, would spend that
// during the partition and then wait up to 5 s per connection once the
// link is back. The limit on concurrent connections per address stays.
func newResourceManager() (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	unlimited := func(p string) rate.PrefixLimit {
		return rate.PrefixLimit{Prefix: netip.MustParsePrefix(p)} // zero Limit: unlimited
	}
	limiter := &rate.Limiter{
		NetworkPrefixLimits: []rate.PrefixLimit{
			unlimited("127.0.0.0/8"), unlimited("::1/128"), // as libp2p
			unlimited("10.0.0.0/8"), unlimited("172.16.0.0/12"), unlimited("192.168.0.0/16"),
			unlimited("169.254.0.0/16"), unlimited("fc00::/7"), unlimited("fe80::/10"),
		},
		// libp2p's defaults for every other address.
		SubnetRateLimiter: rate.SubnetLimiter{
			IPv4SubnetLimits: []rate.SubnetLimit{{PrefixLength: 32, Limit: rate.Limit{RPS: 0.2, Burst: 16}}},
			IPv6SubnetLimits: []rate.SubnetLimit{
				{PrefixLength: 56, Limit: rate.Limit{RPS: 0.2, Burst: 16}},
				{PrefixLength: 48, Limit: rate.Limit{RPS: 0.5, Burst: 80}},
			},
			GracePeriod: time.Minute,
		},
	}
	return rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()), rcmgr.WithConnRateLimiters(limiter))
}

// Host returns the underlying libp2p host (for GossipSub and streams). Do
// not Close it; close the Host instead.
func (h *Host) Host() host.Host { return h.h }

// ID returns the host's peer ID.
func (h *Host) ID() peer.ID { return h.h.ID() }

// Addrs returns the host's addresses, each ending in /p2p/<ID>, ready to
// give to another peer's Connect or Config.Bootstrap.
func (h *Host) Addrs() []ma.Multiaddr { return Addrs(h.h) }

// Addrs returns h's addresses, each ending in /p2p/<ID>: what Host.Addrs
// returns, for any libp2p host (for example one an app built itself).
func Addrs(h host.Host) []ma.Multiaddr {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	if err != nil { // only for an empty peer ID, which a running host never has
		return nil
	}
	return addrs
}

// DHT returns the Kademlia DHT, or nil when the DHT is off.
func (h *Host) DHT() *dht.IpfsDHT { return h.dht }

// MDNSError reports why mDNS discovery is not running: nil when it runs or
// was not requested, otherwise the error from starting it.
func (h *Host) MDNSError() error { return h.mdnsErr }

// Connect dials the peer at addr, a multiaddr ending in /p2p/<peer ID>.
func (h *Host) Connect(ctx context.Context, addr string) error {
	if h.isClosed() {
		return ErrClosed
	}
	return Connect(ctx, h.h, addr)
}

// Connect dials the peer at addr, a multiaddr ending in /p2p/<peer ID>,
// from any libp2p host: what Host.Connect does, without its closed check.
func Connect(ctx context.Context, h host.Host, addr string) error {
	info, err := peer.AddrInfoFromString(addr)
	if err != nil {
		return fmt.Errorf("p2p: connect: address %q (want a multiaddr ending in /p2p/<peer ID>): %w", addr, err)
	}
	if info.ID == h.ID() {
		return fmt.Errorf("p2p: connect: %s is this host", info.ID)
	}
	if err := h.Connect(ctx, *info); err != nil {
		return fmt.Errorf("p2p: connect %s: %w", info.ID, err)
	}
	return nil
}

// Close stops discovery and rendezvous loops, waits for them, then closes
// the DHT and the libp2p host. It is idempotent: every call returns the
// first one's result.
//
// A Host has no Shutdown(ctx): nothing in its close is worth waiting for.
// libp2p has no goodbye on a connection (closing the host closes every
// connection at once, and the peers learn of it from the transport: TCP's
// FIN, QUIC's CONNECTION_CLOSE); the mDNS goodbye (the service's records
// with TTL 0) is one multicast that Close sends without waiting; the DHT
// says nothing when it stops. Goodbyes that need waiting for live above
// the host: gossip.Router.Shutdown and repo.Repo.Shutdown, which close the
// host only after them.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		h.cancel()

		var errs []error
		h.healMu.Lock()
		svc := h.mdns
		h.healMu.Unlock()
		if svc != nil {
			// Waits for the browse goroutines; HandlePeerFound calls that
			// start later see closed and return at once.
			if err := svc.Close(); err != nil {
				errs = append(errs, fmt.Errorf("mDNS: %w", err))
			}
		}
		h.h.Network().StopNotify(h.notify)
		h.wg.Wait()
		if h.dht != nil {
			if err := h.dht.Close(); err != nil {
				errs = append(errs, fmt.Errorf("DHT: %w", err))
			}
		}
		if err := h.h.Close(); err != nil {
			errs = append(errs, fmt.Errorf("host: %w", err))
		}
		if h.hooks != nil && h.hooks.closed != nil {
			errs = append(errs, h.hooks.closed())
		}
		if err := errors.Join(errs...); err != nil {
			h.closeErr = fmt.Errorf("p2p: close: %w", err)
		}
	})
	return h.closeErr
}

// goTracked runs f in a goroutine that Close waits for. It returns false
// (and does not run f) once Close has begun.
func (h *Host) goTracked(f func()) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		f()
	}()
	return true
}

// enter registers the calling goroutine with Close's wait group; the caller
// must call h.wg.Done when finished. It returns false once Close has begun.
func (h *Host) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1)
	return true
}

func (h *Host) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// connected reports whether the host has a live connection to p.
func (h *Host) connected(p peer.ID) bool {
	return h.h.Network().Connectedness(p) == network.Connected
}
