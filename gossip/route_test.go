package gossip

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/room/roomnet"
)

// Topic.Publish returns once pubsub's event loop input buffer (32
// messages) has the message, before the loop routes it, and the loop
// serves its inputs in random order: a Router.Close right after a burst
// from many goroutines must still route and write every one of them
// (Topic.Close waits for the route count, then Router.Close for the send
// tracker). Every receiver gets every message.
func TestRouterCloseRoutesMessagesStillBufferedInPubsub(t *testing.T) {
	const publishers, each, receivers = 16, 16, 3
	// A per-peer outbound queue that holds the whole burst: pubsub drops
	// RPCs beyond it (128 by default), which is not what this checks.
	b := newNode(t, Config{Options: []pubsub.Option{pubsub.WithPeerOutboundQueueSize(1024)}})
	tb, err := b.r.Join("lobby")
	if err != nil {
		t.Fatal(err)
	}
	var ms []*member
	for range receivers {
		n := newNode(t, Config{QueueSize: 4 * publishers * each, Rate: 1e4, Burst: 1e4}) // no rate limit in the way
		ms = append(ms, join(t, n, "lobby"))
		connect(t, b.h, n.h)
	}
	eventually(t, 5*time.Second, "b reaches the receivers", func() bool { return len(tb.Peers()) == receivers })
	var wg sync.WaitGroup
	for g := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := tb.Publish(context.Background(), roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: fmt.Appendf(nil, "g%d-%d", g, i)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	_ = b.r.Close()
	for _, m := range ms {
		got := make(map[string]bool)
		m.waitFor(t, 5*time.Second, "all of b's messages", func(ev roomnet.Event) bool {
			if ev.Kind == roomnet.EventMessage && peer.ID(ev.From) == b.id() {
				got[string(ev.Msg.Payload)] = true
			}
			return len(got) == publishers*each
		})
	}
}
