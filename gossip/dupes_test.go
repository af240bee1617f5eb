package gossip

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"

	"github.com/convene-p2p/convene/room/roomnet"
)

// TestCopiesPerDelivery measures, in a room where every member is connected
// to every other (a LAN with mDNS), how many copies of each message a member
// receives and how many IHAVE IDs it is sent, for mesh degree choices. It
// documents the D choice in docs/PROTOCOL.md; set CONVENE_LONG=1 to run it.
func TestCopiesPerDelivery(t *testing.T) {
	if os.Getenv("CONVENE_LONG") == "" {
		t.Skip("set CONVENE_LONG=1 to measure duplicates per delivery")
	}
	def := pubsub.DefaultGossipSubParams()
	def.HeartbeatInterval = 250 * time.Millisecond
	variants := []struct {
		name   string
		params pubsub.GossipSubParams
	}{
		{"pubsub defaults (heartbeat 250ms)", def},
		{"GossipSubParams()", GossipSubParams()},
	}
	for _, n := range []int{5, 10, 20, 30} {
		for _, v := range variants {
			t.Run(fmt.Sprintf("N=%d %s", n, v.name), func(t *testing.T) {
				const roomID, perNode = "dupes", 5
				nodes := make([]*node, n)
				members := make([]*member, n)
				for i := range nodes {
					p := v.params
					p.HeartbeatInitialDelay = 10 * time.Millisecond
					nodes[i] = newNode(t, Config{Params: &p})
					members[i] = join(t, nodes[i], roomID)
				}
				for i := range nodes {
					for j := i + 1; j < n; j++ {
						connect(t, nodes[i].h, nodes[j].h)
					}
				}
				want := min(v.params.Dlo, n-1)
				eventually(t, 10*time.Second, "meshes", func() bool {
					for _, nd := range nodes {
						if nd.tracer.meshSize(TopicName(roomID)) < want {
							return false
						}
					}
					return true
				})
				for _, nd := range nodes {
					nd.tracer.count(true)
				}
				for i, m := range members {
					for k := range perNode {
						if err := m.t.Publish(context.Background(), roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: fmt.Appendf(nil, "%d/%d", i, k)}); err != nil {
							t.Fatal(err)
						}
					}
				}
				total := n * perNode
				for _, nd := range nodes {
					eventually(t, 10*time.Second, "deliveries", func() bool { return int(nd.r.Stats().Accepted) == total-perNode })
				}
				// Observation window, not synchronisation: IHAVE for these
				// messages is emitted over the next HistoryGossip heartbeats.
				<-time.After(time.Duration(v.params.HistoryGossip+1) * v.params.HeartbeatInterval)
				var copies, ids, idBytes int
				for _, nd := range nodes {
					nd.tracer.count(false)
					c, i, b := nd.tracer.counts()
					copies, ids, idBytes = copies+c, ids+i, idBytes+b
				}
				deliveries := n * (total - perNode)
				t.Logf("N=%d %s: %.2f copies received per delivered message, %.2f IHAVE IDs (%.0f B) per delivered message",
					n, v.name, float64(copies)/float64(deliveries), float64(ids)/float64(deliveries), float64(idBytes)/float64(deliveries))
			})
		}
	}
}
