package rooms_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"

	"github.com/convene-p2p/convene/room"
	tn "github.com/convene-p2p/convene/test/internal/testnet"

	"github.com/convene-p2p/convene/room/roomnet"
)

// Issue 15, 3: what scoring promises (docs/PROTOCOL.md 2.6.2). A plain
// go-libp2p-pubsub node X, admitted to the room (it said hello) and
// connected to A and B, has invalid messages signed by it delivered to B
// only (by a bare host: the ban follows the signer, not the forwarder). B
// bans X for InvalidBan × 2^(N−1) after its Nth invalid message: X's own
// RPCs are dropped unread (graylisted), and X's valid broadcasts, which A
// accepts (it never saw anything invalid from X) and relays to B, are
// ignored at B until the ban ends; then they are delivered again. Before,
// B penalised only the forwarder (P4), X was never graylisted, and X's
// broadcasts kept being delivered.
func TestInvalidMessagesBanTheirAuthorAtEveryRelay(t *testing.T) {
	const roomID = "scored"
	const base = 400 * time.Millisecond
	mk := func(name string) *honest {
		cfg := tn.Config(name)
		cfg.Gossip.InvalidBan = base
		tr := &tn.Tracer{}
		cfg.Gossip.Options = []pubsub.Option{pubsub.WithRawTracer(tr)}
		r := tn.Loopback(t, cfg)
		return &honest{r: r, rm: tn.Join(t, r, roomID), tr: tr}
	}
	a, b := mk("A"), mk("B")
	tn.Connect(t, a.r.Host(), b.r.Host())
	x := tn.NewPlain(t, roomID)
	tn.Connect(t, x.Host, b.r.Host())
	x.WaitPeers(t, 1)
	px := room.PeerID(x.ID())
	epoch := uint64(time.Now().UnixMilli())
	kind := roomnet.KindHello
	tn.Announce(t, tn.Wait, "A and B admit X", func() {
		x.Publish(t, tn.Encode(t, roomnet.Message{Kind: kind, Epoch: epoch, Name: "X", State: tn.State(t, x.ID(), epoch)}))
		kind = roomnet.KindHeartbeat
	}, func() bool { return tn.CountMember(a.rm, px) == 1 && tn.CountMember(b.rm, px) == 1 })
	recB := tn.RecordRoom(t, b.rm)
	tn.Connect(t, x.Host, a.r.Host())
	x.WaitPeers(t, 2)
	courier := tn.NewInjector(t)

	seq := 0
	broadcastAt := func(since time.Time) (time.Time, bool) {
		for _, s := range recB.Events() {
			if s.Ev.Type == room.Broadcast && s.Ev.Member.Peer == px && s.At.After(since) {
				return s.At, true
			}
		}
		return time.Time{}, false
	}
	for n := 1; n <= 3; n++ {
		ban := base << (n - 1)
		malformed := b.r.Stats().Malformed
		courier.SendRPC(t, b.r.Host(), roomID, tn.Signed(t, roomID, x.ID(), x.Key, fmt.Appendf(nil, "\xffinvalid %d", n)))
		tn.Eventually(t, tn.Wait, "B rejects X's invalid message", func() bool { return b.r.Stats().Malformed > malformed })
		rejected := time.Now()
		// X keeps broadcasting valid messages; B must not deliver one
		// before the ban ends, and must once it has.
		banned := b.r.Stats().Banned
		var first time.Time
		tn.Eventually(t, ban+tn.Wait, fmt.Sprintf("B hears X again after ban %d", n), func() bool {
			if at, ok := broadcastAt(rejected); ok {
				first = at
				return true
			}
			seq++
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = x.Topic.Publish(ctx, tn.Encode(t, roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: epoch, Payload: fmt.Appendf(nil, "valid %d", seq)}))
			// A paced sender: about one broadcast per 20 ms.
			tick := time.NewTimer(20 * time.Millisecond)
			defer tick.Stop()
			<-tick.C
			return false
		})
		out := first.Sub(rejected)
		t.Logf("invalid message %d: X out at B for %v (ban %v); %d relayed copies ignored at B meanwhile; B's score for X now %.0f",
			n, out.Round(time.Millisecond), ban, b.r.Stats().Banned-banned, b.r.PeerScores()[x.ID()])
		if out < ban-20*time.Millisecond {
			t.Errorf("invalid message %d: B delivered X's broadcast %v after the rejection, before the ban of %v ended", n, out, ban)
		}
		if b.r.Stats().Banned == banned {
			t.Errorf("invalid message %d: no relayed copy of X's messages was ignored at B during the ban", n)
		}
	}
	if _, ok := tn.RecordRoom(t, a.rm).Find(tn.MemberLeft(px)); ok {
		t.Errorf("A dropped X")
	}
}
