package repo_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/gossip"
	"github.com/convene-p2p/convene/p2p"
	"github.com/convene-p2p/convene/repo"
)

// appNode is an app that runs its own GossipSub (default options) with a
// topic of its own, on a host Convene is then embedded in.
type appNode struct {
	h     *p2p.Host
	ps    *pubsub.PubSub
	topic *pubsub.Topic
	sub   *pubsub.Subscription
}

func newAppNode(t *testing.T) *appNode {
	t.Helper()
	h, err := p2p.New(context.Background(), p2p.LocalConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ps, err := pubsub.NewGossipSub(ctx, h.Host())
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join("app/chat")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := topic.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sub.Cancel()
		_ = topic.Close()
		cancel()
		_ = h.Close()
	})
	return &appNode{h: h, ps: ps, topic: topic, sub: sub}
}

// delivers checks that the app's own topic carries a message from a to b:
// a publishes a fresh message every 100 ms until b has received one of
// them (GossipSub without flood publishing drops what is published before
// its mesh forms), within a deadline.
func delivers(t *testing.T, a, b *appNode, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	got := make(chan string, 1)
	go func() {
		for {
			m, err := b.sub.Next(ctx)
			if err != nil {
				return
			}
			if m.ReceivedFrom != b.h.ID() {
				got <- string(m.Data)
				return
			}
		}
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		if err := a.topic.Publish(ctx, fmt.Appendf(nil, "%s %d", what, i)); err != nil {
			t.Fatalf("%s: app publish: %v", what, err)
		}
		select {
		case <-got:
			return
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("%s: the app's own topic delivered nothing from %s to %s (peers %v)", what, a.h.ID(), b.h.ID(), a.topic.ListPeers())
		}
	}
}

// An app that runs its own GossipSub can embed Convene on the same host
// and router (Config.PubSub): Convene's rooms work, the app's own topic
// keeps delivering both ways while they do and after Convene closes, and
// the app's router keeps running. Before, Convene started a second
// GossipSub that took over the /meshsub handlers: the app's topic went to
// 0 peers, and Convene's Close reset the app's streams.
func TestConveneOnAnAppsOwnGossipSubLeavesTheAppsTopicsWorking(t *testing.T) {
	a, b := newAppNode(t), newAppNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := a.h.Host().Connect(ctx, peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Host().Addrs()}); err != nil {
		t.Fatal(err)
	}
	delivers(t, a, b, "before")

	embed := func(n *appNode, name string) *repo.Repo {
		cfg := repo.LocalConfig()
		cfg.Name, cfg.Libp2pHost, cfg.PubSub = name, n.h.Host(), n.ps
		r, err := repo.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ra, rb := embed(a, "A"), embed(b, "B")
	roomA, roomB := join(t, ra, "lobby"), join(t, rb, "lobby")
	if err := roomA.SetJSON("cursor", map[string]int{"x": 1}); err != nil {
		t.Fatal(err)
	}
	w := roomB.Watch()
	for {
		if _, ok := roomB.Get(ra.Self().Peer, "cursor"); ok {
			break
		}
		if _, err := w.Next(ctx); err != nil {
			t.Fatalf("B's room never got A's presence on the shared router: %v", err)
		}
	}
	w.Close()
	delivers(t, a, b, "during A→B")
	delivers(t, b, a, "during B→A")

	if err := ra.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rb.Close(); err != nil {
		t.Fatal(err)
	}
	delivers(t, a, b, "after A→B")
	delivers(t, b, a, "after B→A")
	if len(a.ps.GetTopics()) != 1 {
		t.Errorf("after Close the app's router has topics %v, want only its own", a.ps.GetTopics())
	}
}

// A second GossipSub router on a host that already runs one is refused
// with a clear error, instead of silently breaking the app's router.
func TestNewOnAHostThatRunsGossipSubIsRefused(t *testing.T) {
	a := newAppNode(t)
	cfg := repo.LocalConfig()
	cfg.Libp2pHost = a.h.Host()
	r, err := repo.New(context.Background(), cfg)
	if err == nil {
		_ = r.Close()
		t.Fatal("repo.New started a second GossipSub on a host that runs one")
	}
	if !errors.Is(err, gossip.ErrPubSubRunning) {
		t.Errorf("repo.New = %v, want gossip.ErrPubSubRunning", err)
	}
	cfg = repo.LocalConfig()
	cfg.PubSub = a.ps // without its host
	if r, err := repo.New(context.Background(), cfg); err == nil {
		_ = r.Close()
		t.Error("repo.New accepted PubSub without Libp2pHost")
	}
}
