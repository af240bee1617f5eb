package gossip

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/room/roomnet"
)

// hostile is a plain go-libp2p-pubsub node (not a Router): its own
// GossipSub with StrictSign and flood publishing, publishing raw bytes on a
// room topic with no validator of its own.
type hostile struct {
	h     host.Host
	topic *pubsub.Topic
}

func newHostile(t testing.TB, roomID string) *hostile {
	t.Helper()
	h := newHost(t)
	ctx, cancel := context.WithCancel(context.Background())
	ps, err := pubsub.NewGossipSub(ctx, h,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithFloodPublish(true))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	topic, err := ps.Join(TopicName(roomID))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = topic.Close()
		cancel()
	})
	return &hostile{h: h, topic: topic}
}

func (x *hostile) publish(t testing.TB, data []byte) {
	t.Helper()
	if err := x.topic.Publish(context.Background(), data); err != nil {
		t.Fatalf("hostile publish: %v", err)
	}
}

func mustEncode(t testing.TB, m roomnet.Message) []byte {
	t.Helper()
	b, err := EncodeMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Hostile plain pubsub nodes send (a) garbage, (b) an oversized message,
// (c) a hello whose presence describes another peer, (d) ten times the rate
// limit. Every honest node rejects and counts each by reason, honest traffic
// keeps flowing meanwhile, and the hostile peers' scores drop below zero
// while honest peers' scores do not.
func TestHostilePeersAreRejectedCountedAndPenalised(t *testing.T) {
	const roomID = "arena"
	const rate, burst = 20, 20
	cfg := Config{Rate: rate, Burst: burst}

	honest := []*node{newNode(t, cfg), newNode(t, cfg), newNode(t, cfg)}
	members := make([]*member, len(honest))
	for i, n := range honest {
		members[i] = join(t, n, roomID)
	}
	for i := range honest {
		for j := i + 1; j < len(honest); j++ {
			connect(t, honest[i].h, honest[j].h)
		}
	}
	for i, m := range members {
		var others []peer.ID
		for j, n := range honest {
			if j != i {
				others = append(others, n.id())
			}
		}
		m.waitPeerUp(t, 5*time.Second, others...)
	}

	garbage, oversize, spoofer, flooder := newHostile(t, roomID), newHostile(t, roomID), newHostile(t, roomID), newHostile(t, roomID)
	hostiles := []*hostile{garbage, oversize, spoofer, flooder}
	for _, x := range hostiles {
		for _, n := range honest {
			connect(t, x.h, n.h)
		}
		eventually(t, 5*time.Second, "hostile sees the honest subscriptions", func() bool { return len(x.topic.ListPeers()) == len(honest) })
	}

	// Honest traffic during the attack: node 0 broadcasts every 100 ms
	// (10/s, within the rate limit).
	const honestMsgs = 12
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := range honestMsgs {
			<-tick.C
			if err := members[0].t.Publish(context.Background(), roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: fmt.Appendf(nil, "honest %d", i)}); err != nil {
				t.Errorf("honest publish: %v", err)
				return
			}
		}
	}()

	// (a) garbage, (b) oversized (valid envelope, 70 KiB > 64 KiB),
	// (c) a hello carrying honest node 0's presence, signed by the spoofer.
	garbage.publish(t, []byte("\xffthis is not an envelope"))
	oversize.publish(t, mustEncode(t, roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: make([]byte, 70<<10)}))
	spoofer.publish(t, mustEncode(t, roomnet.Message{Kind: roomnet.KindHello, Epoch: 1, Name: "not me",
		State: presence(t, honest[0].id(), "cursor", `{"x":0,"y":0}`)}))
	// (d) 10× the rate for one second: 200 valid broadcasts, one every 5 ms.
	floodStart := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	for i := range 10 * rate {
		<-tick.C
		flooder.publish(t, mustEncode(t, roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: fmt.Appendf(nil, "flood %d", i)}))
	}
	tick.Stop()
	floodTime := time.Since(floodStart)
	wg.Wait()

	// Honest traffic was delivered in full.
	for _, m := range members[1:] {
		got := map[string]bool{}
		floodDelivered := 0
		m.waitFor(t, 10*time.Second, "all honest messages", func(ev roomnet.Event) bool {
			if ev.Kind != roomnet.EventMessage {
				return false
			}
			switch peer.ID(ev.From) {
			case honest[0].id():
				got[string(ev.Msg.Payload)] = true
			case flooder.h.ID():
				floodDelivered++
			case garbage.h.ID(), oversize.h.ID(), spoofer.h.ID():
				t.Errorf("%s delivered an invalid message from a hostile peer: %+v", m.n.id(), ev.Msg)
			}
			return len(got) == honestMsgs
		})
		// Drain what is already queued, then bound the flooder's deliveries.
		for drained := false; !drained; {
			select {
			case ev := <-m.events:
				if ev.Kind == roomnet.EventMessage && peer.ID(ev.From) == flooder.h.ID() {
					floodDelivered++
				}
			default:
				drained = true
			}
		}
		limit := burst + int(rate*floodTime.Seconds()) + 5
		if floodDelivered > limit {
			t.Errorf("%s delivered %d flood messages, limit %d (burst %d + %v at %d/s)", m.n.id(), floodDelivered, limit, burst, floodTime, rate)
		}
		t.Logf("%s: %d of %d flood messages delivered in %v", m.n.id(), floodDelivered, 10*rate, floodTime)
	}

	// Every honest node counted every attack under its reason.
	for i, n := range honest {
		eventually(t, 5*time.Second, fmt.Sprintf("node %d counters", i), func() bool {
			st := n.r.Stats()
			return st.Malformed >= 1 && st.Oversized >= 1 && st.WrongAuthor >= 1 && st.RateLimited+st.PreLimited >= 1
		})
		t.Logf("honest node %d stats: %+v", i, n.r.Stats())
	}

	// Scores: hostile peers negative at every honest node; honest peers not
	// penalised for relaying.
	for i, n := range honest {
		eventually(t, 5*time.Second, fmt.Sprintf("node %d scores", i), func() bool {
			scores := n.r.PeerScores()
			for _, x := range hostiles {
				if s, ok := scores[x.h.ID()]; !ok || s >= 0 {
					return false
				}
			}
			return true
		})
		scores := n.r.PeerScores()
		for j, o := range honest {
			if j != i && scores[o.id()] < 0 {
				t.Errorf("node %d scores honest node %d at %v", i, j, scores[o.id()])
			}
		}
		t.Logf("honest node %d scores: garbage %.1f, oversize %.1f, spoofer %.1f, flooder %.1f",
			i, scores[garbage.h.ID()], scores[oversize.h.ID()], scores[spoofer.h.ID()], scores[flooder.h.ID()])
	}
}
