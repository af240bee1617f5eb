package p2p

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/zeroconf/v2"
)

// inbound counts the connections a host accepts, per remote peer.
type inbound struct {
	mu sync.Mutex
	n  map[peer.ID]int
}

func countInbound(h *Host) *inbound {
	in := &inbound{n: map[peer.ID]int{}}
	h.Host().Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if c.Stat().Direction == network.DirInbound {
			in.mu.Lock()
			in.n[c.RemotePeer()]++
			in.mu.Unlock()
		}
	}})
	return in
}

func (in *inbound) from(p peer.ID) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.n[p]
}

// A kept peer is redialled when its connection closes, every time; a peer
// that is not kept is not.
func TestKeptPeerIsRedialledWhenItsConnectionCloses(t *testing.T) {
	a := newHost(t, LocalConfig())
	b := newHost(t, LocalConfig())
	c := newHost(t, LocalConfig())
	inB, inC := countInbound(b), countInbound(c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, x := range []*Host{b, c} {
		if err := a.Connect(ctx, x.Addrs()[0].String()); err != nil {
			t.Fatal(err)
		}
	}
	a.Keep(b.ID())

	for round := range 3 {
		before := inB.from(a.ID())
		start := time.Now()
		if err := b.Host().Network().ClosePeer(a.ID()); err != nil {
			t.Fatal(err)
		}
		// The first redial is due after redialMin ± 25 %.
		waitFor(t, 5*time.Second, "a redials b", func() bool { return inB.from(a.ID()) > before && a.connected(b.ID()) })
		t.Logf("round %d: redialled after %v", round, time.Since(start).Round(time.Millisecond))
	}

	before := inC.from(a.ID())
	if err := c.Host().Network().ClosePeer(a.ID()); err != nil {
		t.Fatal(err)
	}
	// Longer than the first three redials of a kept peer would take.
	window := time.NewTimer(4 * redialMin * 5 / 4)
	defer window.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if inC.from(a.ID()) != before {
			t.Fatal("a redialled c, which it does not keep")
		}
		select {
		case <-window.C:
			return
		case <-tick.C:
		}
	}
}

// A fresh mDNS browse's answer (a TXT record "dnsaddr=<addr>/p2p/<ID>")
// is dialled: this is how a lost peer that restarted on a new port is
// found again. Self and malformed records are ignored.
func TestBrowseAnswerIsDialled(t *testing.T) {
	a := newHost(t, LocalConfig())
	b := newHost(t, LocalConfig())
	e := &zeroconf.ServiceEntry{Text: []string{
		"dnsaddr=" + a.Addrs()[0].String(), // self
		"dnsaddr=not a multiaddr",
		"other=record",
		"dnsaddr=" + b.Addrs()[0].String(),
	}}
	a.mdnsEntry(e)
	waitFor(t, 5*time.Second, "a dials b", func() bool { return a.connected(b.ID()) })
	// The dialling goroutine keeps the peer once Connect has returned,
	// which may be a moment after the connection shows.
	waitFor(t, 5*time.Second, "a keeps b", func() bool {
		a.healMu.Lock()
		defer a.healMu.Unlock()
		_, kept := a.kept[b.ID()]
		return kept
	})
}
