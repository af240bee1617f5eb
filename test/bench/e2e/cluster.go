package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/convene-p2p/convene/ephemeral"
	"github.com/convene-p2p/convene/gossip"
	"github.com/convene-p2p/convene/p2p"
	"github.com/convene-p2p/convene/room"

	"github.com/convene-p2p/convene/room/roomnet"
)

const (
	// roomID is the benchmark room. The raw baseline publishes on a topic
	// of the same name (gossip.TopicName(roomID)) in its own GossipSub
	// instance, so both carry identical topic bytes in every message.
	roomID = "bench"
	// cursorKey is the presence key every node moves.
	cursorKey = "cursor"
	// rawProto is the protocol ID of the raw GossipSub baseline. It runs
	// beside Convene's router on the same hosts; a protocol ID of its own
	// keeps the two routers apart and lets the bandwidth counter attribute
	// every byte to one of them.
	rawProto = protocol.ID("/convene-e2e-raw/meshsub/1.3.0")
	// wait is the generous deadline for conditions that normally hold in
	// milliseconds; it only matters when something is broken.
	wait = 30 * time.Second
)

// rawFeatures gives the raw protocol every GossipSub 1.3 feature, like
// /meshsub/1.3.0 which Convene's routers negotiate between themselves.
func rawFeatures(_ pubsub.GossipSubFeature, p protocol.ID) bool { return p == rawProto }

// rawOptions are the options of the raw baseline router: the GossipSub
// parameters and router options of gossip.Router (gossip.GossipSubParams,
// flood publishing, no peer exchange, 30 s seen cache, queue sizes,
// StrictSign) without Convene's topic validator, peer scoring and
// subscription filter, which are part of what Convene adds.
func rawOptions() []pubsub.Option {
	params := gossip.GossipSubParams()
	return []pubsub.Option{
		pubsub.WithGossipSubParams(params),
		pubsub.WithFloodPublish(true),
		pubsub.WithPeerExchange(false),
		pubsub.WithSeenMessagesTTL(30 * time.Second),
		pubsub.WithValidateQueueSize(256),
		pubsub.WithPeerOutboundQueueSize(128),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithGossipSubProtocols([]protocol.ID{rawProto}, rawFeatures),
		pubsub.WithLogger(slog.New(golog.SlogHandler()).With("logger", "pubsub")),
	}
}

// cursorValue is the JSON cursor of update seq: {"x":NNN,"y":NNN}, always
// 17 bytes (the value PROTOCOL.md sizes), with seq encoded in x and y.
func cursorValue(seq uint32) []byte {
	return fmt.Appendf(nil, `{"x":%d,"y":%d}`, 100+seq%900, 100+(seq/900)%900)
}

// parseCursor recovers seq from a cursorValue.
func parseCursor(v []byte) (uint32, bool) {
	if len(v) != 17 || string(v[:5]) != `{"x":` || string(v[8:13]) != `,"y":` || v[16] != '}' {
		return 0, false
	}
	x, err1 := strconv.Atoi(string(v[5:8]))
	y, err2 := strconv.Atoi(string(v[13:16]))
	if err1 != nil || err2 != nil || x < 100 || y < 100 {
		return 0, false
	}
	return uint32(y-100)*900 + uint32(x-100), true
}

// rawPayloadSize is the size of the Convene envelope carrying one cursor
// update (a delta with the 17-byte value), so the raw baseline publishes
// exactly as many data bytes per update as Convene.
func rawPayloadSize() (int, error) {
	st, err := ephemeral.New(ephemeral.Config{Self: "e2e-size-probe", Epoch: uint64(time.Now().UnixMilli())})
	if err != nil {
		return 0, err
	}
	if _, err := st.Set(time.Now(), cursorKey, cursorValue(1)); err != nil {
		return 0, err
	}
	b, err := gossip.EncodeMessage(roomnet.Message{Kind: roomnet.KindDelta, Epoch: st.Epoch(), State: st.EncodeDelta()})
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

func rawPayload(size int, sender int, seq uint32) []byte {
	b := make([]byte, max(size, 6))
	binary.BigEndian.PutUint16(b[0:2], uint16(sender))
	binary.BigEndian.PutUint32(b[2:6], seq)
	for i := 6; i < len(b); i++ {
		b[i] = byte('a' + i%26)
	}
	return b
}

// presenceSink receives every applied remote cursor update.
type presenceSink interface {
	presence(recv, sender int, seq uint32, t time.Duration)
}

// rawSink receives every raw GossipSub message.
type rawSink interface {
	raw(recv, sender int, seq uint32, t time.Duration)
}

type sinkBox struct {
	p presenceSink
	r rawSink
}

// node is one libp2p host with Convene's router and room on it, and
// optionally the raw baseline router.
type node struct {
	c  *cluster
	i  int // index in c.nodes; -1 for visitors (newcomers, crash victims)
	ph *p2p.Host
	h  host.Host
	bw *bwCounter

	ps       *pubsub.PubSub
	psCancel context.CancelFunc
	rawTopic *pubsub.Topic
	rawSub   *pubsub.Subscription

	router  *gossip.Router
	topic   *gossip.Topic
	room    *room.Room
	watcher *room.Watcher
	onEvent func(n *node, ev room.Event, t time.Duration)

	seq       uint32 // last cursor seq set by this node (one writer at a time)
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// cluster is N nodes in one room on loopback TCP, connected as a sparse
// random graph.
type cluster struct {
	start   time.Time
	roomCfg room.Config
	nodes   []*node
	byPeer  map[room.PeerID]int
	edges   [][2]int
	rawSize int
	// routerOpts are added to every Convene router's pubsub options
	// (gossip.Config.Options; the hub node process's diagnostics).
	routerOpts []pubsub.Option
	// connected is when the last edge was dialled (buildCluster).
	connected time.Time

	sink   atomic.Pointer[sinkBox]
	watch  atomic.Pointer[watchRec]
	lagged atomic.Int64
}

func (c *cluster) now() time.Duration { return time.Since(c.start) }

func (c *cluster) setSink(p presenceSink, r rawSink) { c.sink.Store(&sinkBox{p: p, r: r}) }

// newNode starts a host (loopback TCP, Convene's p2p.LocalConfig, with the
// bandwidth counter), Convene's gossip router and, if withRaw, the raw
// baseline router subscribed to the baseline topic.
func (c *cluster) newNode(ctx context.Context, i int, withRaw bool) (*node, error) {
	n := &node{c: c, i: i, bw: newBWCounter(), onEvent: c.roomEvent0}
	cfg := p2p.LocalConfig()
	cfg.Options = append(cfg.Options, libp2p.BandwidthReporter(n.bw))
	ph, err := p2p.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	n.ph, n.h = ph, ph.Host()
	if withRaw {
		psCtx, cancel := context.WithCancel(context.Background())
		n.psCancel = cancel
		if n.ps, err = pubsub.NewGossipSub(psCtx, n.h, rawOptions()...); err != nil {
			n.close()
			return nil, fmt.Errorf("raw gossipsub: %w", err)
		}
		if n.rawTopic, err = n.ps.Join(gossip.TopicName(roomID)); err != nil {
			n.close()
			return nil, fmt.Errorf("raw join: %w", err)
		}
		if n.rawSub, err = n.rawTopic.Subscribe(pubsub.WithBufferSize(256)); err != nil {
			n.close()
			return nil, fmt.Errorf("raw subscribe: %w", err)
		}
		n.wg.Add(1)
		go n.rawLoop()
	}
	if n.router, err = gossip.New(ctx, n.h, gossip.Config{Options: c.routerOpts}); err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

// joinRoom opens the room on n (the same calls as repo.JoinRoom: gossip
// Router.Join, then room.New) and starts reading its events.
func (n *node) joinRoom(cfg room.Config) error {
	t, err := n.router.Join(roomID)
	if err != nil {
		return err
	}
	self := room.Identity{Peer: room.PeerID(n.h.ID()), Name: "n" + strconv.Itoa(n.i)}
	// A deep watcher buffer: the harness's own event reader must not be
	// what loses events when the process is saturated.
	cfg.WatchBuffer = 1 << 14
	rm, err := room.New(roomID, self, cfg, t)
	if err != nil {
		_ = t.Close()
		return err
	}
	n.topic, n.room, n.watcher = t, rm, rm.Watch()
	n.wg.Add(1)
	go n.roomLoop()
	return nil
}

// setCursor sets the next cursor value and returns its seq.
func (n *node) setCursor() (uint32, error) {
	n.seq++
	return n.seq, n.room.Set(cursorKey, cursorValue(n.seq))
}

func (n *node) roomLoop() {
	defer n.wg.Done()
	for {
		ev, err := n.watcher.Next(context.Background())
		if err != nil {
			return
		}
		n.onEvent(n, ev, n.c.now())
	}
}

func (n *node) rawLoop() {
	defer n.wg.Done()
	self := n.h.ID()
	for {
		m, err := n.rawSub.Next(context.Background())
		if err != nil {
			return
		}
		if m.ReceivedFrom == self || m.GetFrom() == self {
			continue
		}
		t := n.c.now()
		d := m.GetData()
		if len(d) < 6 {
			continue
		}
		if s := n.c.sink.Load(); s != nil && s.r != nil {
			s.r.raw(n.i, int(binary.BigEndian.Uint16(d[0:2])), binary.BigEndian.Uint32(d[2:6]), t)
		}
	}
}

// roomEvent0 dispatches a cluster node's room event to the current sinks.
func (c *cluster) roomEvent0(n *node, ev room.Event, t time.Duration) {
	switch ev.Type {
	case room.PresenceChanged:
		ch := ev.Change
		if ch.Cause == ephemeral.CauseRemote && (slices.Contains(ch.Added, cursorKey) || slices.Contains(ch.Updated, cursorKey)) {
			if s := c.sink.Load(); s != nil && s.p != nil {
				if j, ok := c.byPeer[ch.Peer]; ok {
					if v, ok := n.room.Get(ch.Peer, cursorKey); ok {
						if seq, ok := parseCursor(v); ok {
							s.p.presence(n.i, j, seq, t)
						}
					}
				}
			}
		}
	case room.Lagged:
		c.lagged.Add(int64(ev.Dropped))
	}
	if w := c.watch.Load(); w != nil {
		w.event(n.i, ev, t)
	}
}

// crash closes n's libp2p host abruptly: its connections close, nothing
// else is said (no goodbye, no unsubscribe).
func (n *node) crash() { _ = n.ph.Close() }

// close shuts n down: room, Convene router, raw router, host; it waits for
// n's goroutines. Idempotent.
func (n *node) close() {
	n.closeOnce.Do(func() {
		if n.room != nil {
			_ = n.room.Close()
			n.watcher.Close()
		}
		if n.router != nil {
			_ = n.router.Close()
		}
		if n.rawSub != nil {
			n.rawSub.Cancel()
		}
		if n.rawTopic != nil {
			_ = n.rawTopic.Close()
		}
		if n.psCancel != nil {
			n.psCancel()
			// Like gossip.Router.Close: pubsub leaves its streams to the
			// host; reset them so its readers exit now.
			n.h.RemoveStreamHandler(rawProto)
			for _, conn := range n.h.Network().Conns() {
				for _, s := range conn.GetStreams() {
					if s.Protocol() == rawProto {
						_ = s.Reset()
					}
				}
			}
		}
		n.wg.Wait()
		_ = n.ph.Close()
	})
}

// buildCluster starts N nodes (with the raw baseline if withRaw), and
// connects them as a random graph in which every node dials degree others
// (seeded). With joinFirst the rooms are joined before connecting.
func buildCluster(ctx context.Context, N, degree int, seed uint64, roomCfg room.Config, withRaw, joinFirst bool) (*cluster, error) {
	c := &cluster{start: time.Now(), roomCfg: roomCfg, byPeer: make(map[room.PeerID]int)}
	size, err := rawPayloadSize()
	if err != nil {
		return nil, err
	}
	c.rawSize = size
	for i := range N {
		n, err := c.newNode(ctx, i, withRaw)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
		c.nodes = append(c.nodes, n)
		c.byPeer[room.PeerID(n.h.ID())] = i
	}
	if joinFirst {
		if err := c.joinAll(); err != nil {
			c.close()
			return nil, err
		}
	}
	c.edges = randomGraph(N, degree, newRand(seed+uint64(N)))
	if err := c.connect(ctx); err != nil {
		c.close()
		return nil, err
	}
	c.connected = time.Now()
	return c, nil
}

func (c *cluster) joinAll() error {
	for _, n := range c.nodes {
		if err := n.joinRoom(c.roomCfg); err != nil {
			return fmt.Errorf("node %d join: %w", n.i, err)
		}
		if _, err := n.setCursor(); err != nil {
			return err
		}
	}
	return nil
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

// randomGraph returns the edges (dialler, dialled) of a graph in which each
// node dials min(degree, N-1) distinct random others (a pair dialled both
// ways is one edge); redrawn until the graph is connected.
func randomGraph(N, degree int, rng *rand.Rand) [][2]int {
	d := min(degree, N-1)
	for {
		seen := make(map[[2]int]bool)
		var edges [][2]int
		for i := range N {
			picked := 0
			for _, j := range rng.Perm(N) {
				if picked == d {
					break
				}
				if j == i {
					continue
				}
				picked++
				key := [2]int{min(i, j), max(i, j)}
				if !seen[key] {
					seen[key] = true
					edges = append(edges, [2]int{i, j})
				}
			}
		}
		if connected(N, edges) {
			return edges
		}
	}
}

// hopMatrix returns the shortest-path hop counts between all nodes.
func hopMatrix(N int, edges [][2]int) [][]int {
	adj := make([][]int, N)
	for _, e := range edges {
		adj[e[0]] = append(adj[e[0]], e[1])
		adj[e[1]] = append(adj[e[1]], e[0])
	}
	out := make([][]int, N)
	for s := range N {
		d := make([]int, N)
		for i := range d {
			d[i] = -1
		}
		d[s] = 0
		queue := []int{s}
		for len(queue) > 0 {
			i := queue[0]
			queue = queue[1:]
			for _, j := range adj[i] {
				if d[j] < 0 {
					d[j] = d[i] + 1
					queue = append(queue, j)
				}
			}
		}
		out[s] = d
	}
	return out
}

func connected(N int, edges [][2]int) bool {
	adj := make([][]int, N)
	for _, e := range edges {
		adj[e[0]] = append(adj[e[0]], e[1])
		adj[e[1]] = append(adj[e[1]], e[0])
	}
	seen := make([]bool, N)
	stack := []int{0}
	seen[0] = true
	count := 1
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, j := range adj[i] {
			if !seen[j] {
				seen[j] = true
				count++
				stack = append(stack, j)
			}
		}
	}
	return count == N
}

// connect dials every edge, a few at a time.
func (c *cluster) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, e := range c.edges {
		a, b := c.nodes[e[0]], c.nodes[e[1]]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := a.h.Connect(ctx, peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Addrs()}); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("connect %d->%d: %w", e[0], e[1], err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// dial connects visitor v to the given cluster nodes in parallel and returns
// when the first and when the last connection completed.
func (c *cluster) dial(ctx context.Context, v *node, to []int) (first, last time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	first = -1
	for _, j := range to {
		b := c.nodes[j]
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := v.h.Connect(ctx, peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Addrs()})
			t := c.now()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			if first < 0 || t < first {
				first = t
			}
			last = max(last, t)
		}()
	}
	wg.Wait()
	return first, last, errors.Join(errs...)
}

// waitUntil polls cond every step until it holds or d passes.
func waitUntil(ctx context.Context, d, step time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		t := time.NewTimer(step)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// fullPresence reports whether every node sees every other node's cursor.
func (c *cluster) fullPresence() bool {
	for _, n := range c.nodes {
		if n.room == nil {
			return false
		}
		st := n.room.States()
		cnt := 0
		for p, kv := range st {
			if _, ok := c.byPeer[p]; ok {
				if _, ok := kv[cursorKey]; ok {
					cnt++
				}
			}
		}
		if cnt < len(c.nodes) {
			return false
		}
	}
	return true
}

// sentBytes sums the bytes sent by every cluster node, split by router.
func (c *cluster) sentBytes() (raw, convene, other int64) {
	for _, n := range c.nodes {
		r, cv, o := n.bw.sentBytes()
		raw, convene, other = raw+r, convene+cv, other+o
	}
	return
}

// gossipStats sums gossip.Router stats over the cluster.
func (c *cluster) gossipStats() gossip.Stats {
	var s gossip.Stats
	for _, n := range c.nodes {
		x := n.router.Stats()
		s.Published += x.Published
		s.Accepted += x.Accepted
		s.Malformed += x.Malformed
		s.Oversized += x.Oversized
		s.WrongAuthor += x.WrongAuthor
		s.RateLimited += x.RateLimited
		s.Dropped += x.Dropped
		s.FetchServed += x.FetchServed
		s.FetchRefused += x.FetchRefused
		s.FetchInvalid += x.FetchInvalid
	}
	return s
}

// close closes every node, in parallel.
func (c *cluster) close() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.close()
		}()
	}
	wg.Wait()
}

// connectedTo reports whether cluster node j has a live connection to p.
func (c *cluster) connectedTo(j int, p peer.ID) bool {
	return c.nodes[j].h.Network().Connectedness(p) == network.Connected
}
