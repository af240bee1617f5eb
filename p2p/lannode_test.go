package p2p

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// lanNodeEnv makes the test binary run as a LAN node (runLanNode) instead
// of running tests; TestMDNSDiscoveryInNetns starts it in a netns.
const lanNodeEnv = "CONVENE_P2P_LANNODE"

const lanTopic = "convene-p2p-lan-test"

// lanEvent is one JSON line printed by a LAN node.
type lanEvent struct {
	Ev    string   `json:"ev"`              // start, mdns-found, connected, topic-peer, published, message, error
	ID    string   `json:"id,omitempty"`    // start: own peer ID
	Peer  string   `json:"peer,omitempty"`  // the other peer
	Data  string   `json:"data,omitempty"`  // message payload, error text
	MS    float64  `json:"ms"`              // since the host started
	Addrs []string `json:"addrs,omitempty"` // start: own addresses
}

// runLanNode starts a Host with the default Config (no addresses given,
// mDNS on), joins a GossipSub topic with flood publish, publishes one line
// once another peer is on the topic, and prints events as JSON lines until
// stdin closes or it gets SIGTERM. It returns the process exit code.
func runLanNode() int {
	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	var start time.Time
	emit := func(e lanEvent) {
		mu.Lock()
		defer mu.Unlock()
		if !start.IsZero() {
			e.MS = float64(time.Since(start).Microseconds()) / 1000
		}
		_ = enc.Encode(e)
	}

	var seenMDNS sync.Map
	cfg := Config{hooks: &hooks{peerFound: func(source, _ string, p peer.ID) {
		if _, dup := seenMDNS.LoadOrStore(p, true); !dup && source == "mdns" {
			emit(lanEvent{Ev: "mdns-found", Peer: p.String()})
		}
	}}}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start = time.Now()
	h, err := New(ctx, cfg)
	if err != nil {
		emit(lanEvent{Ev: "error", Data: err.Error()})
		return 1
	}
	defer h.Close()
	var addrs []string
	for _, a := range h.Addrs() {
		addrs = append(addrs, a.String())
	}
	if err := h.MDNSError(); err != nil {
		emit(lanEvent{Ev: "error", Data: err.Error()})
		return 1
	}

	var seenConn sync.Map
	h.Host().Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if _, dup := seenConn.LoadOrStore(c.RemotePeer(), true); !dup {
			emit(lanEvent{Ev: "connected", Peer: c.RemotePeer().String(), Data: c.RemoteMultiaddr().String()})
		}
	}})
	emit(lanEvent{Ev: "start", ID: h.ID().String(), Addrs: addrs})

	ps, err := pubsub.NewGossipSub(ctx, h.Host(), pubsub.WithFloodPublish(true))
	if err != nil {
		emit(lanEvent{Ev: "error", Data: err.Error()})
		return 1
	}
	topic, err := ps.Join(lanTopic)
	if err != nil {
		emit(lanEvent{Ev: "error", Data: err.Error()})
		return 1
	}
	sub, err := topic.Subscribe()
	if err != nil {
		emit(lanEvent{Ev: "error", Data: err.Error()})
		return 1
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // reader
		defer wg.Done()
		for {
			m, err := sub.Next(ctx)
			if err != nil {
				return
			}
			if m.ReceivedFrom == h.ID() {
				continue
			}
			emit(lanEvent{Ev: "message", Peer: m.GetFrom().String(), Data: string(m.Data)})
		}
	}()
	go func() { // publish once a peer is on the topic (its subscription and our send queue exist)
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if peers := topic.ListPeers(); len(peers) > 0 {
				emit(lanEvent{Ev: "topic-peer", Peer: peers[0].String()})
				if err := topic.Publish(ctx, []byte("hello from "+h.ID().String())); err != nil {
					emit(lanEvent{Ev: "error", Data: err.Error()})
					return
				}
				emit(lanEvent{Ev: "published"})
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-stop:
	case <-eof:
	}

	sub.Cancel()
	cancel()
	wg.Wait()
	_ = topic.Close()
	return 0
}
