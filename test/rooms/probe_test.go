package rooms_test

import (
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/gossip"
	"github.com/convene-p2p/convene/room"
	tn "github.com/convene-p2p/convene/test/internal/testnet"

	"github.com/convene-p2p/convene/room/roomnet"
)

// Issue 15, 4: the independent js peer's malformed senders, each a fresh
// identity that also answers the honest member's join-snapshot Fetch with
// a malformed reply. The inputs here are the ones that used to get
// through: envelopes valid part by part whose tie to the presence state
// is not — a heartbeat or hello without any state, and an envelope epoch
// that is not the state's. As a Fetch reply (the honest member fetches
// every peer that comes up) each one made its sender a member ("member-
// joined", with no presence or with an epoch the store does not hold);
// published on the topic, each one was accepted by the validator. Now
// every one is rejected on both paths and no member event follows.
func TestMalformedFetchRepliesAndEnvelopesMakeNoMember(t *testing.T) {
	const roomID = "probe"
	b := newHonest(t, "B", roomID)
	recB := tn.RecordRoom(t, b.rm)
	cases := []struct {
		name string
		msg  func(x peer.ID) roomnet.Message
	}{
		{"heartbeat without state", func(peer.ID) roomnet.Message {
			return roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: 7, Name: "nobody"}
		}},
		{"hello without state", func(peer.ID) roomnet.Message {
			return roomnet.Message{Kind: roomnet.KindHello, Epoch: 7, Name: "nobody"}
		}},
		{"epoch mismatch", func(x peer.ID) roomnet.Message {
			return roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: 8, Name: "two-faced", State: tn.State(t, x, 7, "k", "v")}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := tn.NewPlain(t, roomID)
			env := tn.Encode(t, tc.msg(x.ID()))
			reply := append([]byte{0}, binary.AppendUvarint(nil, uint64(len(env)))...)
			reply = append(append(reply, env...), 0) // ok, envelope, no relayed messages
			served := make(chan struct{}, 8)
			x.Host.SetStreamHandler(gossip.FetchProtocol, func(s network.Stream) {
				_, _ = io.ReadAll(io.LimitReader(s, 1024))
				_, _ = s.Write(reply)
				_ = s.Close()
				served <- struct{}{}
			})
			invalid := b.r.Stats().FetchInvalid
			tn.Connect(t, x.Host, b.r.Host())
			x.WaitPeers(t, 1)
			select {
			case <-served:
			case <-time.After(tn.Wait):
				t.Fatal("B never fetched the sender")
			}
			px := room.PeerID(x.ID())
			// B has handled the reply: counted invalid (fixed) or admitted
			// the sender (before).
			tn.Eventually(t, tn.Wait, "B handles the reply", func() bool {
				_, joined := recB.Find(tn.MemberJoined(px))
				return joined || b.r.Stats().FetchInvalid > invalid
			})
			// B now bans the sender for its invalid reply (2.6.2), so the
			// topic copy comes from another fresh identity, which serves
			// no fetch at all (a failed fetch is not an invalid reply).
			y := tn.NewPlain(t, roomID)
			tn.Connect(t, y.Host, b.r.Host())
			y.WaitPeers(t, 1)
			py := room.PeerID(y.ID())
			env = tn.Encode(t, tc.msg(y.ID()))
			malformed := b.r.Stats().Malformed
			accepted := b.r.Stats().Accepted
			y.Publish(t, env)
			tn.Eventually(t, tn.Wait, "B validates the topic copy", func() bool {
				st := b.r.Stats()
				return st.Malformed > malformed || st.Accepted > accepted
			})
			for _, p := range []room.PeerID{px, py} {
				if s, ok := recB.Find(tn.MemberJoined(p)); ok {
					t.Errorf("B admitted the sender of a %s: %s (name %q)", tc.name, tn.Short(s.Ev.Member.Peer), s.Ev.Member.Name)
				}
			}
			if st := b.r.Stats(); st.Malformed == malformed {
				t.Errorf("the topic copy of a %s was not rejected as malformed: %+v", tc.name, st)
			}
		})
	}
}
