package gossip

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/convene-p2p/convene/room/roomnet"
)

// signAs builds a pubsub message on topic with data, From set to from and
// signed with sk (which may not be from's key), the way pubsub signs.
func signAs(t *testing.T, from peer.ID, sk crypto.PrivKey, topic string, data []byte, withKey bool) []byte {
	t.Helper()
	m := &pb.Message{From: []byte(from), Data: data, Seqno: []byte{0, 0, 0, 0, 0, 0, 0, 1}, Topic: &topic}
	unsigned, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if m.Signature, err = sk.Sign(append([]byte(pubsub.SignPrefix), unsigned...)); err != nil {
		t.Fatal(err)
	}
	if withKey {
		if m.Key, err = crypto.MarshalPublicKey(sk.GetPublic()); err != nil {
			t.Fatal(err)
		}
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A member relays the signed messages it received from others in its
// Fetch replies; the fetching peer accepts exactly those whose author's
// signature, topic and content verify, whoever relayed them: the relaying
// member can neither forge nor alter another member's state.
func TestFetchRelaysOnlyVerifiedSignedMessages(t *testing.T) {
	a, b, c := newNode(t, Config{}), newNode(t, Config{}), newNode(t, Config{})
	ma, mb, mc := join(t, a, "lobby"), join(t, b, "lobby"), join(t, c, "lobby")
	ob, oc := join(t, b, "other"), join(t, c, "other")
	connect(t, a.h, b.h)
	connect(t, b.h, c.h) // a and c are not connected
	mb.waitPeerUp(t, 5*time.Second, a.id(), c.id())
	mc.waitPeerUp(t, 5*time.Second, b.id())
	oc.waitPeerUp(t, 5*time.Second, b.id())
	ctx := context.Background()

	hb := roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: stateEpoch, Name: "Carol", State: presence(t, c.id(), "cursor", `{"x":3}`)}
	if err := mc.t.Publish(ctx, hb); err != nil {
		t.Fatal(err)
	}
	got := mb.waitFor(t, 5*time.Second, "c's heartbeat", func(ev roomnet.Event) bool {
		return ev.Kind == roomnet.EventMessage && peer.ID(ev.From) == c.id() && ev.Msg.Kind == roomnet.KindHeartbeat
	})
	if len(got.Signed) == 0 {
		t.Fatal("received heartbeat carries no signed form")
	}
	if err := oc.t.Publish(ctx, hb); err != nil {
		t.Fatal(err)
	}
	otherTopic := ob.waitFor(t, 5*time.Second, "c's heartbeat in other", func(ev roomnet.Event) bool {
		return ev.Kind == roomnet.EventMessage && peer.ID(ev.From) == c.id()
	}).Signed
	if err := mc.t.Publish(ctx, roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 7, Payload: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	if ev := mb.waitFor(t, 5*time.Second, "c's broadcast", isBroadcast(c.id(), "hi")); ev.Signed != nil {
		t.Error("a broadcast carries a signed form: only state messages are relayed")
	}

	// Altered copies of c's genuine message.
	var tampered pb.Message
	if err := proto.Unmarshal(got.Signed, &tampered); err != nil {
		t.Fatal(err)
	}
	tampered.Data = mustEncode(t, roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: stateEpoch, Name: "Mallory", State: presence(t, c.id(), "cursor", `{"x":666}`)})
	tamperedBytes, err := proto.Marshal(&tampered)
	if err != nil {
		t.Fatal(err)
	}
	evilKey, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	evil, err := peer.IDFromPrivateKey(evilKey)
	if err != nil {
		t.Fatal(err)
	}
	forged := mustEncode(t, roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: stateEpoch + 1, Name: "Carol", State: presenceAt(t, c.id(), stateEpoch+1, "cursor", `{"x":666}`)})
	lobby := TopicName("lobby")
	relayed := [][]byte{
		got.Signed,    // genuine
		tamperedBytes, // data altered after signing
		otherTopic,    // genuine, but another room's
		{0xff, 0x01},  // garbage
		signAs(t, c.id(), evilKey, lobby, forged, true),                                                           // claims c, signed by another key (key attached)
		signAs(t, c.id(), evilKey, lobby, forged, false),                                                          // claims c, signed by another key
		signAs(t, evil, evilKey, lobby, forged, false),                                                            // signed by its author, but about c
		signAs(t, evil, evilKey, lobby, mustEncode(t, roomnet.Message{Kind: roomnet.KindLeave, Epoch: 1}), false), // valid, wrong kind
	}
	mb.serve(func() (roomnet.Served, bool) {
		return roomnet.Served{State: roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: stateEpoch, State: presence(t, b.id())}, Relayed: relayed}, true
	})
	reply, err := ma.t.Fetch(ctx, roomnet.PeerID(b.id()))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if len(reply.Relayed) != 1 {
		t.Fatalf("%d relayed messages accepted, want 1 (c's genuine heartbeat): %+v", len(reply.Relayed), reply.Relayed)
	}
	ev := reply.Relayed[0]
	if peer.ID(ev.From) != c.id() || ev.Kind != roomnet.EventMessage || !sameMessage(ev.Msg, hb) {
		t.Errorf("relayed = %+v, want c's heartbeat %+v", ev, hb)
	}
	if st := ma.t.Stats(); st.RelayAccepted != 1 || st.RelayInvalid != uint64(len(relayed)-1) {
		t.Errorf("RelayAccepted %d, RelayInvalid %d; want 1 and %d", st.RelayAccepted, st.RelayInvalid, len(relayed)-1)
	}

	// What a relays again is still c's verifiable message.
	if _, _, err := openSigned(ev.Signed, lobby); err != nil {
		t.Errorf("relayed message no longer verifies: %v", err)
	}
}

func FuzzOpenSigned(f *testing.F) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		f.Fatal(err)
	}
	topic := TopicName("lobby")
	for _, withKey := range []bool{false, true} {
		m := &pb.Message{From: []byte(id), Data: []byte{1, 2, 3}, Seqno: []byte{1}, Topic: &topic}
		unsigned, _ := proto.Marshal(m)
		m.Signature, _ = sk.Sign(append([]byte(pubsub.SignPrefix), unsigned...))
		if withKey {
			m.Key, _ = crypto.MarshalPublicKey(sk.GetPublic())
		}
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		from, _, err := openSigned(data, topic)
		if err == nil && from == "" {
			t.Fatal("accepted without an author")
		}
	})
}

// A suspect must name a peer ID: anything else is malformed at every relay.
func TestCheckSuspectSubjectIsAPeerID(t *testing.T) {
	n := newNode(t, Config{})
	author := randomPeerID(t)
	good := mustEncode(t, roomnet.Message{Kind: roomnet.KindSuspect, Epoch: 1, Subject: roomnet.PeerID(randomPeerID(t)), SubjectEpoch: 2})
	if _, err := n.r.check(good, author); err != nil {
		t.Fatalf("valid suspect rejected: %v", err)
	}
	bad := mustEncode(t, roomnet.Message{Kind: roomnet.KindSuspect, Epoch: 1, Subject: "not a peer id", SubjectEpoch: 2})
	if _, err := n.r.check(bad, author); !errors.Is(err, ErrMalformed) {
		t.Fatalf("suspect about a non-peer-ID: %v, want ErrMalformed", err)
	}
}
