package p2p

import (
	"errors"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// Defaults applied by [New] to zero-valued [Config] fields.
const (
	// DefaultMDNSService is the mDNS service name Convene peers announce and
	// browse. It differs from libp2p's "_p2p._udp" so that a Convene peer
	// does not dial every libp2p node on the LAN (IPFS daemons, other apps).
	DefaultMDNSService = "_convene._udp"

	// DefaultDHTPrefix is the Kademlia protocol prefix. A private prefix
	// keeps Convene peers in their own DHT instead of the public IPFS Amino
	// DHT ("/ipfs"), which would fill the routing table with strangers.
	DefaultDHTPrefix = "/convene"

	// DefaultConnLow and DefaultConnHigh are the connection manager
	// watermarks: above ConnHigh connections the manager trims down to
	// ConnLow, sparing protected and recently opened ones.
	DefaultConnLow  = 100
	DefaultConnHigh = 400
)

// DefaultListenAddrs are the listen addresses used when Config.ListenAddrs
// is empty: TCP and QUIC on every IPv4 and IPv6 interface, on ports picked
// by the kernel. Listening on all interfaces is what makes the LAN path
// (mDNS) work with no flags; random ports let several peers share a machine.
func DefaultListenAddrs() []string {
	return []string{
		"/ip4/0.0.0.0/tcp/0",
		"/ip4/0.0.0.0/udp/0/quic-v1",
		"/ip6/::/tcp/0",
		"/ip6/::/udp/0/quic-v1",
	}
}

// DHTMode selects whether and how the host runs a Kademlia DHT.
type DHTMode int

const (
	// DHTAuto, the zero value, runs a DHT server when Config.Bootstrap is
	// non-empty and no DHT otherwise. Server (not libp2p's "auto", which
	// stays a client until AutoNAT says the node is public) is what makes a
	// closed network of peers on private addresses work at all.
	DHTAuto DHTMode = iota
	// DHTOff runs no DHT; Rendezvous is then a no-op.
	DHTOff
	// DHTClient queries the DHT but does not answer queries or store records.
	DHTClient
	// DHTServer queries and serves the DHT. Bootstrap nodes must use it.
	DHTServer
)

// String returns "auto", "off", "client" or "server".
func (m DHTMode) String() string {
	switch m {
	case DHTAuto:
		return "auto"
	case DHTOff:
		return "off"
	case DHTClient:
		return "client"
	case DHTServer:
		return "server"
	}
	return fmt.Sprintf("DHTMode(%d)", int(m))
}

// ParseDHTMode parses the output of [DHTMode.String] (case-insensitive).
func ParseDHTMode(s string) (DHTMode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "auto", "":
		return DHTAuto, nil
	case "off":
		return DHTOff, nil
	case "client":
		return DHTClient, nil
	case "server":
		return DHTServer, nil
	}
	return DHTAuto, fmt.Errorf("p2p: unknown DHT mode %q (want auto, off, client or server)", s)
}

// Set implements flag.Value, so a DHTMode can be a command-line flag.
func (m *DHTMode) Set(s string) error {
	v, err := ParseDHTMode(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Config configures a [Host]. The zero value is a usable LAN peer: an
// ephemeral identity, TCP and QUIC on all interfaces, mDNS on, no DHT.
type Config struct {
	// KeyFile is the path of the identity key. The file is created (mode
	// 0600, parent directories 0700) with a new Ed25519 key on first use
	// and read on later runs, so the peer keeps its ID across restarts.
	// A file that exists but cannot be read or decoded is an error and is
	// never overwritten. Empty means an ephemeral random key.
	KeyFile string

	// Key, if set, is the identity key and KeyFile is ignored.
	Key crypto.PrivKey

	// ListenAddrs are multiaddrs to listen on. Empty means
	// [DefaultListenAddrs]. With a PSK, QUIC (and other UDP-based)
	// addresses are dropped, because libp2p's private network protector
	// only wraps stream transports; if none remain New fails.
	ListenAddrs []string

	// NoMDNS turns LAN discovery off. mDNS is on by default so that two
	// peers on one LAN find each other with no configuration.
	NoMDNS bool

	// MDNSService is the mDNS service name. Empty means DefaultMDNSService.
	MDNSService string

	// DHT selects the DHT mode; see [DHTMode]. The zero value DHTAuto runs
	// a server when Bootstrap is set and no DHT otherwise.
	DHT DHTMode

	// Bootstrap are multiaddrs of DHT bootstrap peers, each ending in
	// /p2p/<peer ID>. Empty means none: no public bootstrap peers are ever
	// used implicitly. Setting it with DHT == DHTOff is an error.
	Bootstrap []string

	// DHTPrefix is the DHT protocol prefix. Empty means DefaultDHTPrefix.
	// Peers with different prefixes are in different DHTs.
	DHTPrefix string

	// PSK, if non-empty, is a 32-byte pre-shared key: the host only talks
	// to peers with the same key (a libp2p private network). See ParsePSK
	// for the usual swarm.key file format.
	PSK []byte

	// ConnLow and ConnHigh are the connection manager watermarks. Zero
	// means DefaultConnLow and DefaultConnHigh. Ignored if Options carry
	// their own libp2p.ConnectionManager.
	ConnLow, ConnHigh int

	// Options are passed to libp2p.New after Convene's own options.
	// libp2p metrics are disabled unless an option here sets a registerer
	// (libp2p.PrometheusRegisterer); the default registerer would collide
	// between several hosts in one process.
	Options []libp2p.Option

	// hooks lets tests observe discovery; nil outside tests.
	hooks *hooks
}

// LocalConfig is a preset for tests and demos on one machine: loopback TCP
// only, no mDNS, no DHT (DHTAuto with no Bootstrap), no relay, no metrics.
// Its Options restrict transports to TCP; append to them rather than
// replacing them.
func LocalConfig() Config {
	return Config{
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"},
		NoMDNS:      true,
		Options: []libp2p.Option{
			libp2p.NoTransports,
			libp2p.Transport(tcp.NewTCPTransport),
			libp2p.DisableRelay(),
		},
	}
}

// hooks are test-only observation points.
type hooks struct {
	// peerFound is called when discovery reports a peer other than self.
	// source is "mdns" or "rendezvous"; ns is the rendezvous namespace.
	peerFound func(source, ns string, p peer.ID)
	// findDone is called after each completed rendezvous FindPeers round.
	findDone func(ns string)
	// closed is called at the end of the first Close; its error is one
	// of Close's (libp2p's own close steps never fail in a test).
	closed func() error
}

// settings is a validated Config with defaults filled in.
type settings struct {
	listen      []ma.Multiaddr
	mdns        bool
	mdnsService string
	dht         DHTMode // DHTOff, DHTClient or DHTServer
	bootstrap   []peer.AddrInfo
	dhtPrefix   string
	psk         []byte
	connLow     int
	connHigh    int
}

// validate fills defaults and rejects nonsense. It must catch everything
// that would make libp2p.New fail late, because a failed libp2p.New leaks
// goroutines.
func (c *Config) validate() (*settings, error) {
	s := &settings{
		mdns:        !c.NoMDNS,
		mdnsService: c.MDNSService,
		dht:         c.DHT,
		dhtPrefix:   c.DHTPrefix,
		connLow:     c.ConnLow,
		connHigh:    c.ConnHigh,
	}
	if s.mdnsService == "" {
		s.mdnsService = DefaultMDNSService
	}
	if strings.ContainsAny(s.mdnsService, " \t\r\n") {
		return nil, fmt.Errorf("p2p: mDNS service name %q contains whitespace", s.mdnsService)
	}

	if len(c.PSK) != 0 {
		if len(c.PSK) != 32 {
			return nil, fmt.Errorf("p2p: PSK must be 32 bytes, got %d", len(c.PSK))
		}
		s.psk = append([]byte(nil), c.PSK...)
	}

	addrs := c.ListenAddrs
	if len(addrs) == 0 {
		addrs = DefaultListenAddrs()
	}
	for _, a := range addrs {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return nil, fmt.Errorf("p2p: listen address %q: %w", a, err)
		}
		if s.psk != nil && !pskCompatible(m) {
			continue
		}
		s.listen = append(s.listen, m)
	}
	if len(s.listen) == 0 {
		return nil, errors.New("p2p: no listen address left: QUIC, WebTransport and WebRTC cannot be used with a PSK; add a TCP address")
	}

	for _, b := range c.Bootstrap {
		info, err := peer.AddrInfoFromString(b)
		if err != nil {
			return nil, fmt.Errorf("p2p: bootstrap address %q (want a multiaddr ending in /p2p/<peer ID>): %w", b, err)
		}
		s.bootstrap = mergeAddrInfo(s.bootstrap, *info)
	}

	switch c.DHT {
	case DHTAuto:
		s.dht = DHTOff
		if len(s.bootstrap) > 0 {
			s.dht = DHTServer
		}
	case DHTOff:
		if len(s.bootstrap) > 0 {
			return nil, errors.New("p2p: Bootstrap peers given but DHT is off")
		}
	case DHTClient, DHTServer:
	default:
		return nil, fmt.Errorf("p2p: invalid DHT mode %d", int(c.DHT))
	}
	if s.dhtPrefix == "" {
		s.dhtPrefix = DefaultDHTPrefix
	}
	if !strings.HasPrefix(s.dhtPrefix, "/") || strings.HasSuffix(s.dhtPrefix, "/") {
		return nil, fmt.Errorf("p2p: DHT prefix %q must start with / and not end with /", s.dhtPrefix)
	}

	if s.connLow == 0 {
		s.connLow = DefaultConnLow
	}
	if s.connHigh == 0 {
		s.connHigh = DefaultConnHigh
	}
	if s.connLow < 0 || s.connHigh < 0 || s.connLow > s.connHigh {
		return nil, fmt.Errorf("p2p: connection watermarks must satisfy 0 <= ConnLow <= ConnHigh, got %d and %d", s.connLow, s.connHigh)
	}
	return s, nil
}

// pskCompatible reports whether a listen address can be used on a private
// network: libp2p's PSK protector wraps stream transports (TCP, WebSocket)
// and QUIC refuses a PSK outright.
func pskCompatible(m ma.Multiaddr) bool {
	ok := true
	ma.ForEach(m, func(c ma.Component) bool {
		switch c.Protocol().Code {
		case ma.P_UDP, ma.P_QUIC, ma.P_QUIC_V1, ma.P_WEBTRANSPORT, ma.P_WEBRTC, ma.P_WEBRTC_DIRECT:
			ok = false
			return false
		}
		return true
	})
	return ok
}

// mergeAddrInfo appends info to infos, merging addresses of the same peer.
func mergeAddrInfo(infos []peer.AddrInfo, info peer.AddrInfo) []peer.AddrInfo {
	for i := range infos {
		if infos[i].ID == info.ID {
			infos[i].Addrs = append(infos[i].Addrs, info.Addrs...)
			return infos
		}
	}
	return append(infos, info)
}
