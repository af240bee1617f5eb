package p2p

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

const validBootstrap = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWGRUVh7bXDBTL5Rx1dfhqgA9n8XEt3yq2uWwyeX1gk9nX"

func TestInvalidConfigFailsWithoutLeaking(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	quicOnly := LocalConfig()
	quicOnly.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	quicOnly.PSK = bytes.Repeat([]byte{1}, 32)
	quicOnly.Options = nil

	quicViaOptions := Config{
		NoMDNS:      true,
		ListenAddrs: []string{"/ip4/127.0.0.1/udp/0/quic-v1"},
		Options:     []libp2p.Option{libp2p.PrivateNetwork(bytes.Repeat([]byte{1}, 32))},
	}

	for _, tc := range []struct {
		name string
		mut  func(*Config)
		cfg  *Config
		want string
	}{
		{name: "bad listen multiaddr", mut: func(c *Config) { c.ListenAddrs = []string{"/ip4/999.0.0.1/tcp/0"} }, want: "p2p: listen address"},
		{name: "listen not a multiaddr", mut: func(c *Config) { c.ListenAddrs = []string{"localhost:4001"} }, want: "p2p: listen address"},
		{name: "bootstrap without /p2p/", mut: func(c *Config) { c.Bootstrap = []string{"/ip4/127.0.0.1/tcp/4001"} }, want: "p2p: bootstrap address"},
		{name: "bootstrap garbage", mut: func(c *Config) { c.Bootstrap = []string{"nope"} }, want: "p2p: bootstrap address"},
		{name: "bootstrap with DHT off", mut: func(c *Config) { c.DHT = DHTOff; c.Bootstrap = []string{validBootstrap} }, want: "DHT is off"},
		{name: "PSK too short", mut: func(c *Config) { c.PSK = make([]byte, 16) }, want: "p2p: PSK must be 32 bytes, got 16"},
		{name: "PSK too long", mut: func(c *Config) { c.PSK = make([]byte, 33) }, want: "p2p: PSK must be 32 bytes, got 33"},
		{name: "PSK with only QUIC", cfg: &quicOnly, want: "cannot be used with a PSK"},
		{name: "PSK via Options with only QUIC", cfg: &quicViaOptions, want: "cannot be used with a PSK"},
		{name: "DHT prefix without slash", mut: func(c *Config) { c.DHTPrefix = "convene" }, want: "p2p: DHT prefix"},
		{name: "bad DHT mode", mut: func(c *Config) { c.DHT = DHTMode(42) }, want: "p2p: invalid DHT mode"},
		{name: "watermarks inverted", mut: func(c *Config) { c.ConnLow, c.ConnHigh = 50, 10 }, want: "p2p: connection watermarks"},
		{name: "negative watermark", mut: func(c *Config) { c.ConnLow = -1 }, want: "p2p: connection watermarks"},
		{name: "mDNS name with space", mut: func(c *Config) { c.MDNSService = "_a b._udp" }, want: "p2p: mDNS service name"},
		{name: "conflicting libp2p option", mut: func(c *Config) {
			c.Options = append(c.Options, libp2p.Identity(nil)) // Identity twice
		}, want: "p2p: start libp2p host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := LocalConfig()
			if tc.cfg != nil {
				cfg = *tc.cfg
			} else {
				tc.mut(&cfg)
			}
			h, err := New(context.Background(), cfg)
			if err == nil {
				h.Close()
				t.Fatalf("New succeeded, want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "p2p: ") {
				t.Fatalf("New error %q, want p2p: ... %q", err, tc.want)
			}
		})
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New(ctx, LocalConfig()); err == nil {
		t.Fatal("New with a cancelled context succeeded")
	}
}

func TestPSKDropsQUICListenAddrs(t *testing.T) {
	psk := bytes.Repeat([]byte{7}, 32)
	// Default transports (not LocalConfig's TCP-only set): libp2p would
	// refuse QUIC with a PSK and fail New, so success shows the drop.
	cfg := Config{
		NoMDNS:      true,
		PSK:         psk,
		ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		Options:     []libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1/webtransport")},
	}
	h := newHost(t, cfg)
	if len(h.Addrs()) == 0 {
		t.Fatal("host has no addresses")
	}
	for _, a := range h.Addrs() {
		if !pskCompatible(a) {
			t.Errorf("PSK host listens on %s", a)
		}
		if _, err := a.ValueForProtocol(ma.P_TCP); err != nil {
			t.Errorf("PSK host address %s is not TCP", a)
		}
	}
}

func TestDHTModeStringAndParse(t *testing.T) {
	for _, m := range []DHTMode{DHTAuto, DHTOff, DHTClient, DHTServer} {
		got, err := ParseDHTMode(strings.ToUpper(m.String()))
		if err != nil || got != m {
			t.Errorf("ParseDHTMode(%q) = %v, %v; want %v", m.String(), got, err, m)
		}
	}
	if _, err := ParseDHTMode("sometimes"); err == nil || !strings.HasPrefix(err.Error(), "p2p: unknown DHT mode") {
		t.Errorf("ParseDHTMode(sometimes) err = %v", err)
	}
	if s := DHTMode(9).String(); s != "DHTMode(9)" {
		t.Errorf("String of unknown mode = %q", s)
	}

	var m DHTMode
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Var(&m, "dht", "")
	if err := fs.Parse([]string{"-dht", "server"}); err != nil || m != DHTServer {
		t.Fatalf("flag -dht server: m=%v err=%v", m, err)
	}
}

func TestValidateDefaults(t *testing.T) {
	s, err := (&Config{}).validate()
	if err != nil {
		t.Fatal(err)
	}
	if !s.mdns || s.mdnsService != DefaultMDNSService || s.dht != DHTOff || s.dhtPrefix != DefaultDHTPrefix ||
		s.connLow != DefaultConnLow || s.connHigh != DefaultConnHigh || len(s.listen) != len(DefaultListenAddrs()) {
		t.Errorf("zero Config validated to %+v", s)
	}

	s, err = (&Config{Bootstrap: []string{validBootstrap, strings.Replace(validBootstrap, "4001", "4002", 1)}}).validate()
	if err != nil {
		t.Fatal(err)
	}
	if s.dht != DHTServer {
		t.Errorf("DHTAuto with Bootstrap = %v, want server", s.dht)
	}
	if len(s.bootstrap) != 1 || len(s.bootstrap[0].Addrs) != 2 {
		t.Errorf("two addresses of one bootstrap peer not merged: %v", s.bootstrap)
	}

	s, err = (&Config{PSK: make([]byte, 32)}).validate()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.listen) != 2 {
		t.Errorf("PSK kept %v, want only the two TCP defaults", s.listen)
	}
}

func TestMetricsOffByDefaultOnWithRegisterer(t *testing.T) {
	// Several default hosts in one process must not collide on the global
	// Prometheus registry.
	for range 2 {
		newHost(t, LocalConfig())
	}
	reg := prometheus.NewRegistry()
	cfg := LocalConfig()
	cfg.Options = append(cfg.Options, libp2p.PrometheusRegisterer(reg))
	newHost(t, cfg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) == 0 {
		t.Error("a host given a registerer registered no metrics")
	}
}

func TestOptionsConnManagerIsHonoured(t *testing.T) {
	cm, err := connmgr.NewConnManager(1, 2, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	cfg := LocalConfig()
	cfg.Options = append(cfg.Options, libp2p.ConnectionManager(cm))
	h := newHost(t, cfg)
	if h.Host().ConnManager() != cm {
		t.Error("host does not use the connection manager from Options")
	}
}
