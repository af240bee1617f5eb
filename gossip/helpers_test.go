package gossip

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/convene-p2p/convene/room/roomnet"
)

// testParams is GossipSubParams with a faster first heartbeat, for tests.
func testParams() *pubsub.GossipSubParams {
	p := GossipSubParams()
	p.HeartbeatInitialDelay = 10 * time.Millisecond
	return &p
}

// newHost starts a real libp2p host on loopback TCP (Ed25519 identity, TLS or
// Noise, yamux); the test closes it at cleanup.
func newHost(t testing.TB) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.NoTransports,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatalf("libp2p.New: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// node is a host with a Router; both are closed at cleanup (router first).
type node struct {
	h      host.Host
	r      *Router
	tracer *tracer
}

func newNode(t testing.TB, cfg Config) *node {
	t.Helper()
	h := newHost(t)
	tr := &tracer{}
	if cfg.Params == nil {
		cfg.Params = testParams()
	}
	cfg.Options = append(cfg.Options, pubsub.WithRawTracer(tr))
	r, err := New(context.Background(), h, cfg)
	if err != nil {
		t.Fatalf("gossip.New: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return &node{h: h, r: r, tracer: tr}
}

func (n *node) id() peer.ID { return n.h.ID() }

func connect(t testing.TB, a, b host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatalf("connect: %v", err)
	}
}

// member is a joined Topic with a goroutine draining Next into events.
// It answers Fetch requests itself, with the function set by serve (none:
// refused), as a room would on its loop.
type member struct {
	n      *node
	t      *Topic
	events chan roomnet.Event
	stop   chan struct{}
	done   chan struct{}
	server atomic.Pointer[func() (roomnet.Served, bool)]
}

// serve sets what m answers to Fetch requests; nil refuses them.
func (m *member) serve(f func() (roomnet.Served, bool)) {
	if f == nil {
		m.server.Store(nil)
		return
	}
	m.server.Store(&f)
}

// answer answers an EventFetch with the function set by serve.
func (m *member) answer(ev roomnet.Event) {
	var a roomnet.FetchAnswer
	if f := m.server.Load(); f != nil {
		a.Served, a.OK = (*f)()
	}
	ev.Reply <- a
}

func join(t testing.TB, n *node, roomID string) *member {
	t.Helper()
	tp, err := n.r.Join(roomID)
	if err != nil {
		t.Fatalf("Join(%q): %v", roomID, err)
	}
	m := &member{n: n, t: tp, events: make(chan roomnet.Event, 4096), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			ev, err := tp.Next(context.Background())
			if err != nil {
				return
			}
			if ev.Kind == roomnet.EventFetch {
				m.answer(ev)
				continue
			}
			select {
			case m.events <- ev:
			case <-m.stop:
				return
			}
		}
	}()
	t.Cleanup(m.close)
	return m
}

func (m *member) close() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	_ = m.t.Close()
	<-m.done
}

// waitFor reads m's events until match returns true, failing after d.
// Events that do not match are discarded.
func (m *member) waitFor(t testing.TB, d time.Duration, what string, match func(roomnet.Event) bool) roomnet.Event {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev := <-m.events:
			if match(ev) {
				return ev
			}
		case <-timer.C:
			t.Fatalf("%s: timed out after %v waiting for %s", m.n.id(), d, what)
			return roomnet.Event{}
		}
	}
}

func (m *member) waitPeerUp(t testing.TB, d time.Duration, peers ...peer.ID) {
	t.Helper()
	want := make(map[peer.ID]bool)
	for _, p := range peers {
		want[p] = true
	}
	m.waitFor(t, d, "peer up", func(ev roomnet.Event) bool {
		if ev.Kind == roomnet.EventPeerUp {
			delete(want, peer.ID(ev.From))
		}
		return len(want) == 0
	})
}

func isBroadcast(from peer.ID, payload string) func(roomnet.Event) bool {
	return func(ev roomnet.Event) bool {
		return ev.Kind == roomnet.EventMessage && peer.ID(ev.From) == from &&
			ev.Msg.Kind == roomnet.KindBroadcast && string(ev.Msg.Payload) == payload
	}
}

// eventually polls cond every few milliseconds until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", d, what)
		case <-tick.C:
		}
	}
}

// tracer records grafts and received RPCs (pubsub.RawTracer).
type tracer struct {
	nopTracer
	mu       sync.Mutex
	grafts   []graft
	rpcs     []*pubsub.RPC
	keep     bool
	counting bool
	copies   int // publish entries received while counting
	ihaveIDs int // message IDs advertised to us in IHAVE while counting
	ihaveB   int // bytes of those IDs
}

type graft struct {
	peer  peer.ID
	topic string
	at    time.Time
}

func (tr *tracer) grafted(p peer.ID, topic string) (time.Time, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, g := range tr.grafts {
		if g.peer == p && g.topic == topic {
			return g.at, true
		}
	}
	return time.Time{}, false
}

func (tr *tracer) recordRPCs(on bool) {
	tr.mu.Lock()
	tr.keep = on
	tr.mu.Unlock()
}

func (tr *tracer) received() []*pubsub.RPC {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.rpcs)
}

func (tr *tracer) Graft(p peer.ID, topic string) {
	tr.mu.Lock()
	tr.grafts = append(tr.grafts, graft{p, topic, time.Now()})
	tr.mu.Unlock()
}

func (tr *tracer) RecvRPC(rpc *pubsub.RPC) {
	tr.mu.Lock()
	if tr.keep && len(rpc.GetPublish()) > 0 {
		tr.rpcs = append(tr.rpcs, rpc)
	}
	if tr.counting {
		tr.copies += len(rpc.GetPublish())
		for _, ih := range rpc.GetControl().GetIhave() {
			tr.ihaveIDs += len(ih.GetMessageIDs())
			for _, id := range ih.GetMessageIDs() {
				tr.ihaveB += len(id)
			}
		}
	}
	tr.mu.Unlock()
}

func (tr *tracer) count(on bool) {
	tr.mu.Lock()
	tr.counting = on
	tr.mu.Unlock()
}

func (tr *tracer) counts() (copies, ihaveIDs, ihaveBytes int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.copies, tr.ihaveIDs, tr.ihaveB
}

func (tr *tracer) meshSize(topic string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, g := range tr.grafts {
		if g.topic == topic {
			n++
		}
	}
	return n
}

var _ pubsub.RawTracer = (*tracer)(nil)
