package rooms_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/convene-p2p/convene/gossip"
	"github.com/convene-p2p/convene/room"
	tn "github.com/convene-p2p/convene/test/internal/testnet"

	"github.com/convene-p2p/convene/room/roomnet"
)

// countingNet forwards everything to the real gossip Topic and counts
// the publishes by kind.
type countingNet struct {
	*gossip.Topic
	mu     sync.Mutex
	counts map[roomnet.MessageKind]int
}

var _ roomnet.Network = (*countingNet)(nil)

func (c *countingNet) Publish(ctx context.Context, m roomnet.Message) error {
	c.mu.Lock()
	c.counts[m.Kind]++
	c.mu.Unlock()
	return c.Topic.Publish(ctx, m)
}

func (c *countingNet) count(k roomnet.MessageKind) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[k]
}

func (c *countingNet) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.counts {
		n += v
	}
	return n
}

// 1000 Sets of a cursor in a burst cost a handful of publishes (paced at one
// delta per PublishInterval, bursts of two, plus the trailing edge), counted
// at the room's network interface and cross-checked with gossip's own
// counter; the final value reaches both receivers, and neither ever sees
// the cursor go backwards. The sender is a room over a real gossip Topic
// (what repo.JoinRoom builds), wrapped to count; the receivers are Repos.
func TestCoalescingBurstOf1000SetsCostsFewPublishesFinalValueEverywhere(t *testing.T) {
	const roomID, sets = "burst", 1000
	cfg := room.LocalConfig()

	h := tn.Host(t, nil)
	router, err := gossip.New(context.Background(), h.Host(), gossip.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = router.Close() })
	topic, err := router.Join(roomID)
	if err != nil {
		t.Fatal(err)
	}
	net := &countingNet{Topic: topic, counts: map[roomnet.MessageKind]int{}}
	sender, err := room.New(roomID, room.Identity{Peer: room.PeerID(h.ID()), Name: "sender"}, cfg, net)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sender.Close() })

	b := tn.Loopback(t, tn.Config("B"))
	c := tn.Loopback(t, tn.Config("C"))
	rb, rc := tn.Join(t, b, roomID), tn.Join(t, c, roomID)
	tn.ConnectAll(t, h.Host(), b.Host(), c.Host())
	ps := room.PeerID(h.ID())
	tn.Eventually(t, tn.Wait, "B and C list the sender", func() bool {
		return tn.CountMember(rb, ps) == 1 && tn.CountMember(rc, ps) == 1
	})

	// Receivers check monotonicity on every presence event.
	type cursor struct{ X, Y int }
	var regress sync.Map
	for name, rm := range map[string]*room.Room{"B": rb, "C": rc} {
		w := rm.Watch()
		done := make(chan struct{})
		go func() {
			defer close(done)
			last := -1
			for {
				ev, err := w.Next(context.Background())
				if err != nil {
					return
				}
				if ev.Type != room.PresenceChanged || ev.Change.Peer != ps {
					continue
				}
				var v cursor
				if ok, _ := rm.GetJSON(ps, "cursor", &v); ok {
					if v.X < last {
						regress.Store(name, [2]int{last, v.X})
					}
					last = v.X
				}
			}
		}()
		t.Cleanup(func() { w.Close(); <-done })
	}

	deltas0, total0, published0 := net.count(roomnet.KindDelta), net.total(), topic.Stats().Published
	start := time.Now()
	for i := range sets {
		if err := sender.SetJSON("cursor", cursor{i, i}); err != nil {
			t.Fatal(err)
		}
	}
	burst := time.Since(start)
	for name, rm := range map[string]*room.Room{"B": rb, "C": rc} {
		tn.Eventually(t, tn.Wait, name+" sees the final cursor", func() bool {
			var v cursor
			ok, _ := rm.GetJSON(ps, "cursor", &v)
			return ok && v.X == sets-1 && v.Y == sets-1
		})
	}
	elapsed := time.Since(start)
	deltas := net.count(roomnet.KindDelta) - deltas0
	total := net.total() - total0
	// The wrapper counts a publish (a heartbeat, say) just before gossip
	// does, so gossip's counter may trail it by a message in flight.
	published := 0
	tn.Eventually(t, tn.Wait, "gossip counts every publish the wrapper saw", func() bool {
		published = int(topic.Stats().Published - published0)
		return published >= total
	})

	t.Logf("%d Sets in %v; final value everywhere after %v; publishes: %d deltas, %d in all (gossip counted %d); PublishInterval %v",
		sets, burst.Round(10*time.Microsecond), elapsed.Round(10*time.Microsecond), deltas, total, published, cfg.PublishInterval)
	// The pacing allows 2 + T/PublishInterval deltas in any span T, and the
	// trailing edge goes out at most PublishInterval after the last write:
	// the span of this burst's publishes is at most burst + PublishInterval.
	if limit := 3 + int(burst/cfg.PublishInterval); deltas > limit {
		t.Errorf("%d delta publishes for a %v burst, want at most %d (2 + span/PublishInterval %v, the span being at most the burst plus one PublishInterval for the trailing edge)",
			deltas, burst, limit, cfg.PublishInterval)
	}
	if deltas == 0 || deltas > sets/20 {
		t.Errorf("%d delta publishes for %d Sets: not coalesced", deltas, sets)
	}
	regress.Range(func(k, v any) bool {
		t.Errorf("%v saw the cursor go back from %v", k, v)
		return true
	})
}
