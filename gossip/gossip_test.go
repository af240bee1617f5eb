package gossip

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/convene-p2p/convene/room/roomnet"
)

func TestConfigZeroValueTakesDefaults(t *testing.T) {
	cfg, err := Config{}.validate()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxMessageSize != DefaultMaxMessageSize || cfg.Rate != DefaultRate || cfg.Burst != DefaultBurst ||
		cfg.QueueSize != DefaultQueueSize || cfg.FetchTimeout != DefaultFetchTimeout ||
		cfg.MaxConcurrentFetches != DefaultMaxConcurrentFetches {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	if *cfg.Params != GossipSubParams() || cfg.Params.HeartbeatInterval != 250*time.Millisecond {
		t.Fatalf("params %+v", *cfg.Params)
	}
}

func TestConfigRejectsNonsense(t *testing.T) {
	bad := []Config{
		{MaxMessageSize: 10},
		{MaxMessageSize: 2 << 20},
		{Rate: -1},
		{Burst: -1},
		{QueueSize: -1},
		{FetchTimeout: -time.Second},
		{MaxConcurrentFetches: -1},
	}
	for _, cfg := range bad {
		if _, err := cfg.validate(); err == nil {
			t.Errorf("validate(%+v) accepted", cfg)
		}
	}
	h := newHost(t)
	if _, err := New(context.Background(), h, Config{Rate: -1}); err == nil {
		t.Fatal("New accepted a bad config")
	}
}

func TestJoinValidatesRoomIDAndRejectsSecondJoin(t *testing.T) {
	n := newNode(t, Config{})
	for _, id := range []string{"", "a/b", "x\n"} {
		if _, err := n.r.Join(id); !errors.Is(err, ErrInvalidRoomID) {
			t.Errorf("Join(%q) = %v, want ErrInvalidRoomID", id, err)
		}
	}
	tp, err := n.r.Join("lobby")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.r.Join("lobby"); !errors.Is(err, ErrAlreadyJoined) {
		t.Fatalf("second Join = %v, want ErrAlreadyJoined", err)
	}
	if err := tp.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := tp.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := tp.Next(context.Background()); !errors.Is(err, roomnet.ErrNetworkClosed) {
		t.Fatalf("Next after Close = %v", err)
	}
	if err := tp.Publish(context.Background(), roomnet.Message{Kind: roomnet.KindLeave, Epoch: 1}); !errors.Is(err, roomnet.ErrNetworkClosed) {
		t.Fatalf("Publish after Close = %v", err)
	}
	if _, err := tp.Fetch(context.Background(), roomnet.PeerID("x")); !errors.Is(err, roomnet.ErrNetworkClosed) {
		t.Fatalf("Fetch after Close = %v", err)
	}
	tp2, err := n.r.Join("lobby")
	if err != nil {
		t.Fatalf("rejoin after Close: %v", err)
	}
	if err := n.r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := tp2.Next(context.Background()); !errors.Is(err, roomnet.ErrNetworkClosed) {
		t.Fatalf("Next after Router.Close = %v", err)
	}
	if _, err := n.r.Join("other"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Join after Router.Close = %v, want ErrClosed", err)
	}
	if err := n.r.Close(); err != nil {
		t.Fatalf("second Router.Close: %v", err)
	}
}

func TestPublishRejectsWhatPeersWouldReject(t *testing.T) {
	n := newNode(t, Config{MaxMessageSize: 1024})
	tp, err := n.r.Join("lobby")
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	ctx := context.Background()
	if err := tp.Publish(ctx, roomnet.Message{Kind: 9}); !errors.Is(err, ErrMalformed) {
		t.Errorf("unknown kind: %v", err)
	}
	if err := tp.Publish(ctx, roomnet.Message{Kind: roomnet.KindBroadcast, Payload: make([]byte, 2000)}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	if err := tp.Publish(ctx, roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: []byte("ok")}); err != nil {
		t.Errorf("valid publish with no peers: %v", err)
	}
	if got := tp.Stats().Published; got != 1 {
		t.Errorf("Published = %d, want 1", got)
	}
}

// waitMesh waits until every node in members has grafted each of its
// neighbours in topic (the heartbeat formed the mesh) and returns when the
// last graft happened.
func waitMesh(t testing.TB, topic string, neighbours map[*node][]*node) time.Time {
	t.Helper()
	var last time.Time
	eventually(t, 5*time.Second, "mesh formation", func() bool {
		last = time.Time{}
		for n, ns := range neighbours {
			for _, o := range ns {
				at, ok := n.tracer.grafted(o.id(), topic)
				if !ok {
					return false
				}
				if at.After(last) {
					last = at
				}
			}
		}
		return true
	})
	return last
}

// Four hosts in a line (0-1-2-3): every broadcast reaches every other
// member, relayed through the mesh, with the signer as From.
func TestMessagesReachAllSubscribersWithVerifiedAuthor(t *testing.T) {
	const roomID = "alpha"
	nodes := make([]*node, 4)
	members := make([]*member, 4)
	for i := range nodes {
		nodes[i] = newNode(t, Config{})
		members[i] = join(t, nodes[i], roomID)
	}
	neighbours := map[*node][]*node{}
	for i := 0; i+1 < len(nodes); i++ {
		connect(t, nodes[i].h, nodes[i+1].h)
		neighbours[nodes[i]] = append(neighbours[nodes[i]], nodes[i+1])
		neighbours[nodes[i+1]] = append(neighbours[nodes[i+1]], nodes[i])
	}
	waitMesh(t, TopicName(roomID), neighbours)

	for i, m := range members {
		payload := fmt.Sprintf("from %d", i)
		if err := m.t.Publish(context.Background(), roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: []byte(payload)}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		for j, o := range members {
			if j == i {
				continue
			}
			ev := o.waitFor(t, 5*time.Second, payload, isBroadcast(nodes[i].id(), payload))
			if ev.From != roomnet.PeerID(nodes[i].id()) {
				t.Fatalf("From = %s, want %s", peer.ID(ev.From), nodes[i].id())
			}
		}
	}
	for i, m := range members {
		if st := m.t.Stats(); st.Accepted != 3 || st.Published != 1 {
			t.Errorf("node %d stats %+v, want Accepted 3, Published 1", i, st)
		}
	}
}

// A peer only in room alpha never receives room beta's traffic: not from
// Next, and not even in its validators.
func TestRoomTrafficStaysInItsRoom(t *testing.T) {
	a, b, c := newNode(t, Config{}), newNode(t, Config{}), newNode(t, Config{})
	aAlpha, bAlpha, cAlpha := join(t, a, "alpha"), join(t, b, "alpha"), join(t, c, "alpha")
	aBeta, bBeta := join(t, a, "beta"), join(t, b, "beta")
	connect(t, a.h, b.h)
	connect(t, a.h, c.h)
	connect(t, b.h, c.h)
	aAlpha.waitPeerUp(t, 5*time.Second, b.id(), c.id())
	aBeta.waitPeerUp(t, 5*time.Second, b.id())
	_ = bAlpha

	ctx := context.Background()
	for i := range 5 {
		if err := aBeta.t.Publish(ctx, roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: fmt.Appendf(nil, "beta %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := aAlpha.t.Publish(ctx, roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: []byte("alpha sentinel")}); err != nil {
		t.Fatal(err)
	}
	bBeta.waitFor(t, 5*time.Second, "beta 4", isBroadcast(a.id(), "beta 4"))
	// c receives the alpha sentinel, and nothing else came first.
	ev := cAlpha.waitFor(t, 5*time.Second, "any message", func(ev roomnet.Event) bool { return ev.Kind == roomnet.EventMessage })
	if string(ev.Msg.Payload) != "alpha sentinel" {
		t.Fatalf("c's first message is %q, want the alpha sentinel", ev.Msg.Payload)
	}
	// Stronger: beta messages never even reached c's validators.
	if st := c.r.Stats(); st.Accepted != 1 || st.Malformed+st.Oversized+st.WrongAuthor+st.RateLimited != 0 {
		t.Fatalf("c router stats %+v, want exactly 1 accepted message", st)
	}
	// c still tracks beta's subscriptions, so that a later Join knows its peers at once.
	eventually(t, 5*time.Second, "c knows beta's members", func() bool { return len(c.r.Peers("beta")) == 2 })
}

// Peers already connected (their subscriptions known), a newcomer joins and
// publishes at once, with no wait: flood publishing delivers to everyone.
func TestPublishRightAfterJoinReachesConnectedPeers(t *testing.T) {
	const roomID = "lobby"
	const trials = 5
	var joinToDeliver []time.Duration
	for trial := range trials {
		t.Run(fmt.Sprint("trial", trial), func(t *testing.T) {
			old := []*node{newNode(t, Config{}), newNode(t, Config{}), newNode(t, Config{})}
			oldMembers := make([]*member, len(old))
			for i, n := range old {
				oldMembers[i] = join(t, n, roomID)
			}
			newcomer := newNode(t, Config{})
			for _, n := range old {
				connect(t, newcomer.h, n.h)
			}
			// Readiness without joining: the newcomer's router knows the
			// members' subscriptions and has a stream to each.
			eventually(t, 5*time.Second, "subscriptions known", func() bool { return len(newcomer.r.Peers(roomID)) == len(old) })

			start := time.Now()
			tp, err := newcomer.r.Join(roomID)
			if err != nil {
				t.Fatal(err)
			}
			payload := fmt.Sprintf("first %d", trial)
			if err := tp.Publish(context.Background(), roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: []byte(payload)}); err != nil {
				t.Fatal(err)
			}
			for _, m := range oldMembers {
				m.waitFor(t, 5*time.Second, payload, isBroadcast(newcomer.id(), payload))
			}
			joinToDeliver = append(joinToDeliver, time.Since(start))
			_ = tp.Close()
		})
	}
	if t.Failed() {
		return
	}
	slices.Sort(joinToDeliver)
	t.Logf("Join+Publish -> delivered to all 3 existing members: min %v, median %v, max %v (%d trials, loopback TCP)",
		joinToDeliver[0], joinToDeliver[len(joinToDeliver)/2], joinToDeliver[len(joinToDeliver)-1], trials)
}

// Members join first, then connect; the publisher waits for EventPeerUp of
// each other member (the readiness this package provides) and publishes at
// once. Measures connect -> PeerUp, connect -> first delivery, and connect ->
// mesh formed (the GossipSub heartbeat grafted every pair).
func TestPublishAfterPeerUpReachesEveryone(t *testing.T) {
	const roomID = "lobby"
	const trials = 8
	var toPeerUp, toDeliver, toMesh []time.Duration
	for trial := range trials {
		t.Run(fmt.Sprint("trial", trial), func(t *testing.T) {
			nodes := []*node{newNode(t, Config{}), newNode(t, Config{}), newNode(t, Config{})}
			members := make([]*member, len(nodes))
			for i, n := range nodes {
				members[i] = join(t, n, roomID)
			}
			start := time.Now()
			connect(t, nodes[0].h, nodes[1].h)
			connect(t, nodes[0].h, nodes[2].h)
			connect(t, nodes[1].h, nodes[2].h)
			members[0].waitPeerUp(t, 5*time.Second, nodes[1].id(), nodes[2].id())
			toPeerUp = append(toPeerUp, time.Since(start))

			payload := fmt.Sprintf("hello %d", trial)
			if err := members[0].t.Publish(context.Background(), roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: []byte(payload)}); err != nil {
				t.Fatal(err)
			}
			for _, m := range members[1:] {
				m.waitFor(t, 5*time.Second, payload, isBroadcast(nodes[0].id(), payload))
			}
			toDeliver = append(toDeliver, time.Since(start))

			meshAt := waitMesh(t, TopicName(roomID), map[*node][]*node{
				nodes[0]: {nodes[1], nodes[2]}, nodes[1]: {nodes[0], nodes[2]}, nodes[2]: {nodes[0], nodes[1]},
			})
			toMesh = append(toMesh, meshAt.Sub(start))
		})
	}
	if t.Failed() {
		return
	}
	for _, s := range [][]time.Duration{toPeerUp, toDeliver, toMesh} {
		slices.Sort(s)
	}
	stat := func(s []time.Duration) string {
		return fmt.Sprintf("min %v, median %v, max %v", s[0], s[len(s)/2], s[len(s)-1])
	}
	t.Logf("loopback TCP, 3 hosts, %d trials, heartbeat %v:", trials, GossipSubParams().HeartbeatInterval)
	t.Logf("  connect -> PeerUp of both others at the publisher: %s", stat(toPeerUp))
	t.Logf("  connect -> first message delivered to both others: %s", stat(toDeliver))
	t.Logf("  connect -> full mesh grafted (all 6 directed edges): %s", stat(toMesh))
}

func TestPeerDownWhenPeerLeaves(t *testing.T) {
	a, b := newNode(t, Config{}), newNode(t, Config{})
	ma, mb := join(t, a, "lobby"), join(t, b, "lobby")
	connect(t, a.h, b.h)
	ma.waitPeerUp(t, 5*time.Second, b.id())
	mb.close()
	ma.waitFor(t, 5*time.Second, "peer down", func(ev roomnet.Event) bool {
		return ev.Kind == roomnet.EventPeerDown && peer.ID(ev.From) == b.id()
	})
}

// A consumer that never calls Next loses messages beyond QueueSize, counted
// in Dropped; pubsub itself is never blocked.
func TestLaggingConsumerDropsAndCounts(t *testing.T) {
	const queueSize, sent = 4, 20
	a, b := newNode(t, Config{}), newNode(t, Config{QueueSize: queueSize})
	ma := join(t, a, "lobby")
	tb, err := b.r.Join("lobby") // nobody reads tb
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	connect(t, a.h, b.h)
	eventually(t, 5*time.Second, "b subscribed", func() bool { return len(a.r.Peers("lobby")) == 1 })
	for i := range sent {
		if err := ma.t.Publish(context.Background(), roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: fmt.Appendf(nil, "m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "all accepted", func() bool { return tb.Stats().Accepted == sent })
	eventually(t, 5*time.Second, "drops counted", func() bool { return tb.Stats().Dropped == sent-queueSize })
	// The queue holds queueSize distinct messages (pubsub validates on parallel
	// workers, so even one author's messages may arrive out of order).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []string
	for len(got) < queueSize {
		ev, err := tb.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == roomnet.EventMessage {
			got = append(got, string(ev.Msg.Payload))
		}
	}
	slices.Sort(got)
	if len(slices.Compact(got)) != queueSize {
		t.Fatalf("queued %v, want %d distinct messages", got, queueSize)
	}
	ev, err := func() (roomnet.Event, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		return tb.Next(ctx)
	}()
	if err == nil && ev.Kind == roomnet.EventMessage {
		t.Fatalf("more than QueueSize messages were queued: %+v", ev)
	}
}

// Router.Close stops every goroutine it and GossipSub started, while the
// hosts (owned by the caller) stay open and connected.
func TestRouterCloseLeavesHostRunningAndClean(t *testing.T) {
	ha, hb := newHost(t), newHost(t)
	connect(t, ha, hb)
	baseline := goleak.IgnoreCurrent()

	routers := make([]*Router, 2)
	topics := make([]*Topic, 2)
	for i, h := range []host.Host{ha, hb} {
		r, err := New(context.Background(), h, Config{Params: testParams()})
		if err != nil {
			t.Fatal(err)
		}
		routers[i] = r
		if topics[i], err = r.Join("lobby"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "subscriptions", func() bool { return len(routers[0].Peers("lobby")) == 1 })
	fetched := make(chan error, 1)
	go func() {
		_, err := topics[0].Fetch(context.Background(), roomnet.PeerID(hb.ID()))
		fetched <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		ev, err := topics[1].Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == roomnet.EventFetch {
			ev.Reply <- roomnet.FetchAnswer{Served: roomnet.Served{State: roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: stateEpoch, State: presence(t, hb.ID())}}, OK: true}
			break
		}
	}
	if err := <-fetched; err != nil {
		t.Fatal(err)
	}
	if err := topics[0].Publish(context.Background(), roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := topics[1].Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == roomnet.EventMessage {
			break
		}
	}
	for _, r := range routers {
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	goleak.VerifyNone(t, baseline)
	if len(ha.Network().ConnsToPeer(hb.ID())) == 0 {
		t.Fatal("Router.Close closed the host's connection")
	}
}

// A PeerUp comes only once a Publish reaches the peer: when it is
// returned, the peer is in Peers() (its subscription arrived and the send
// queue to it exists). pubsub's PeerJoin can come before that queue (it is
// counted in deferredUps); such a peer is reported when GossipSub opens
// its stream, not after the peerUpWait fallback.
func TestPeerUpWaitsForTheSendQueue(t *testing.T) {
	const trials = 20
	var deferred uint64
	var took []time.Duration
	for trial := range trials {
		t.Run(fmt.Sprint("trial", trial), func(t *testing.T) {
			a, b := newNode(t, Config{}), newNode(t, Config{})
			ta, err := a.r.Join("lobby")
			if err != nil {
				t.Fatal(err)
			}
			defer ta.Close()
			join(t, b, "lobby")
			start := time.Now()
			if trial%2 == 0 {
				connect(t, a.h, b.h)
			} else {
				connect(t, b.h, a.h)
			}
			nextOf(t, ta, 5*time.Second, roomnet.EventPeerUp)
			d := time.Since(start)
			if !slices.Contains(ta.Peers(), b.id()) {
				t.Fatalf("PeerUp of b before a could publish to it (deferred: %d)", ta.deferredUps.Load())
			}
			if d >= peerUpWait {
				t.Fatalf("PeerUp after %v: it waited for the %v fallback (deferred: %d)", d, peerUpWait, ta.deferredUps.Load())
			}
			deferred += ta.deferredUps.Load()
			took = append(took, d)
		})
	}
	if t.Failed() {
		return
	}
	slices.Sort(took)
	t.Logf("%d trials: PeerJoin before the send queue in %d; connect -> PeerUp median %v, max %v",
		trials, deferred, took[len(took)/2], took[len(took)-1])
}
