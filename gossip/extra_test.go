package gossip

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// A Router started with an extra topic admits exactly that topic besides
// rooms: a plain GossipSub peer subscribed to the extra topic, another
// non-room topic and a room is known on the extra topic and the room, not
// on the other topic; a Router without it admits only the room. Extra
// joins only the extra topic, and only once its validator is registered;
// a flood on it is cut by the pre-check (counted in PreLimited).
func TestExtraTopicIsAdmittedExactlyAndPrechecked(t *testing.T) {
	const extra, other = "/test/extra/1", "/test/other/1"
	if _, err := NewWithTopics(context.Background(), newHost(t), Config{}, TopicName("lobby")); err == nil {
		t.Fatal("NewWithTopics accepted a room topic as an extra topic")
	}
	h := newHost(t)
	r, err := NewWithTopics(context.Background(), h, Config{Params: testParams()}, extra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	plain := newNode(t, Config{}) // only its Router's host is used below

	// The plain peer: its own GossipSub on a fresh host.
	ph := newHost(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps, err := pubsub.NewGossipSub(ctx, ph, pubsub.WithFloodPublish(true), pubsub.WithPeerOutboundQueueSize(4096))
	if err != nil {
		t.Fatal(err)
	}
	var topics []*pubsub.Topic
	for _, name := range []string{extra, other, TopicName("lobby")} {
		tp, err := ps.Join(name)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := tp.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		defer tp.Close()
		defer sub.Cancel()
		topics = append(topics, tp)
	}
	connect(t, ph, h)
	connect(t, ph, plain.h)
	// All three subscriptions travel in the plain peer's first RPC: once
	// the room is known, so is whatever else was admitted.
	has := func(ps *pubsub.PubSub, topic string) bool { return slices.Contains(ps.ListPeers(topic), ph.ID()) }
	eventually(t, 10*time.Second, "the room known at both routers", func() bool {
		return has(r.ps, TopicName("lobby")) && has(plain.r.ps, TopicName("lobby"))
	})
	if !has(r.ps, extra) {
		t.Error("the router started with the extra topic does not admit it")
	}
	if has(r.ps, other) {
		t.Error("the router admits a non-room topic it was not given")
	}
	if has(plain.r.ps, extra) {
		t.Error("a router started without extra topics admits one")
	}

	x := r.Extra()
	if _, err := x.Join(other); !errors.Is(err, ErrNotExtra) {
		t.Errorf("Extra().Join(other) = %v, want ErrNotExtra", err)
	}
	if _, err := x.Join(extra); err == nil {
		t.Error("Extra().Join before the validator was registered succeeded")
	}
	if _, err := plain.r.Extra().Join(extra); !errors.Is(err, ErrNotExtra) {
		t.Errorf("Extra().Join on a router without extra topics = %v, want ErrNotExtra", err)
	}
	var validated atomic.Int64
	if err := x.RegisterTopicValidator(extra, func(context.Context, peer.ID, *pubsub.Message) bool {
		validated.Add(1)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	tp, err := x.Join(extra)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = x.UnregisterTopicValidator(extra) }()
	defer tp.Close()
	sub, err := tp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()

	eventually(t, 10*time.Second, "the router on the plain peer's extra topic", func() bool {
		return slices.Contains(topics[0].ListPeers(), h.ID())
	})
	const flood = 4 * extraBurst
	for range flood {
		if err := topics[0].Publish(ctx, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "the pre-check drops part of the flood", func() bool {
		return r.Stats().PreLimited > 0
	})
	if n := validated.Load(); n >= flood {
		t.Errorf("%d of %d flooded messages reached the validator", n, flood)
	}
}
