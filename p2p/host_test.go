package p2p

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestConnectByMultiaddr(t *testing.T) {
	a := newHost(t, LocalConfig())
	b := newHost(t, LocalConfig())

	for _, addr := range a.Addrs() {
		if _, err := peer.AddrInfoFromP2pAddr(addr); err != nil {
			t.Fatalf("Addrs() entry %s lacks /p2p/: %v", addr, err)
		}
	}
	if a.DHT() != nil {
		t.Error("LocalConfig host runs a DHT")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Connect(ctx, a.Addrs()[0].String()); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if !b.connected(a.ID()) || !a.connected(b.ID()) {
		t.Fatal("hosts not connected after Connect")
	}

	for _, bad := range []string{"", "/ip4/127.0.0.1/tcp/1", "not an address"} {
		if err := b.Connect(ctx, bad); err == nil || !strings.HasPrefix(err.Error(), "p2p: connect") {
			t.Errorf("Connect(%q) err = %v, want p2p: connect ...", bad, err)
		}
	}
	if err := b.Connect(ctx, b.Addrs()[0].String()); err == nil {
		t.Error("Connect to self succeeded")
	}
}

func TestCloseIsIdempotentAndRefusesWork(t *testing.T) {
	a := newHost(t, LocalConfig())
	b := newHost(t, LocalConfig())
	if err := a.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := a.Connect(context.Background(), b.Addrs()[0].String()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Connect after Close: err = %v, want ErrClosed", err)
	}
	a.Rendezvous("room")() // no DHT, closed: a no-op stop
}

// Close returns the first call's result every time, a failure included
// (the one close step a test can make fail is the hook's: libp2p's own
// never fail); before, later calls returned nil.
func TestCloseReturnsTheFirstResultEveryTime(t *testing.T) {
	stepErr := errors.New("a close step failed")
	cfg := LocalConfig()
	cfg.hooks = &hooks{closed: func() error { return stepErr }}
	h, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	first := h.Close()
	if !errors.Is(first, stepErr) {
		t.Fatalf("first Close = %v, want it to wrap %v", first, stepErr)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = h.Close() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != first {
			t.Errorf("Close #%d = %v, want the first result %v", i+2, err, first)
		}
	}
}

func TestRendezvousWithoutDHTIsNoop(t *testing.T) {
	h := newHost(t, LocalConfig())
	stop := h.Rendezvous("room-x")
	stop()
	stop()
}

// The mDNS notifee is exercised directly here (the real multicast path is
// TestMDNSDiscoveryInNetns): it connects to what it is told about, ignores
// itself and does nothing once the host is closed.
func TestMDNSNotifeeConnectsIgnoresSelfAndStopsAtClose(t *testing.T) {
	rec := newRecorder()
	cfg := LocalConfig()
	cfg.hooks = rec.hooks()
	a := newHost(t, cfg)
	b := newHost(t, LocalConfig())
	c := newHost(t, LocalConfig())
	n := (*mdnsNotifee)(a)

	n.HandlePeerFound(peer.AddrInfo{ID: a.ID(), Addrs: a.Host().Addrs()})
	if got := rec.foundBy("mdns", ""); len(got) != 0 {
		t.Fatalf("notifee reported itself: %v", got)
	}

	n.HandlePeerFound(peer.AddrInfo{ID: b.ID(), Addrs: b.Host().Addrs()})
	if !a.connected(b.ID()) {
		t.Fatal("notifee did not connect to the found peer")
	}
	if !rec.foundBy("mdns", "")[b.ID()] {
		t.Fatal("found peer not reported")
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // as the mdns package does: a goroutine per entry, maybe after Close
		defer close(done)
		n.HandlePeerFound(peer.AddrInfo{ID: c.ID(), Addrs: c.Host().Addrs()})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("HandlePeerFound blocked after Close")
	}
	if len(c.Host().Network().Peers()) != 0 {
		t.Fatal("notifee connected after Close")
	}
}

func TestPSKSameKeyConnectsOtherKeyFails(t *testing.T) {
	psk := make([]byte, 32)
	other := make([]byte, 32)
	rand.Read(psk)
	rand.Read(other)
	with := func(k []byte) Config {
		cfg := LocalConfig()
		cfg.PSK = bytes.Clone(k)
		return cfg
	}
	a := newHost(t, with(psk))
	b := newHost(t, with(psk))
	c := newHost(t, with(other))
	d := newHost(t, LocalConfig())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Connect(ctx, a.Addrs()[0].String()); err != nil {
		t.Fatalf("same PSK: Connect: %v", err)
	}
	for name, h := range map[string]*Host{"other PSK": c, "no PSK": d} {
		dctx, dcancel := context.WithTimeout(ctx, 3*time.Second)
		err := h.Connect(dctx, a.Addrs()[0].String())
		dcancel()
		if err == nil {
			t.Errorf("%s: Connect to a PSK host succeeded", name)
		}
		if h.connected(a.ID()) || a.connected(h.ID()) {
			t.Errorf("%s: hosts connected", name)
		}
	}
}
