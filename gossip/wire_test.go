package gossip

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"google.golang.org/protobuf/proto"

	"github.com/convene-p2p/convene/ephemeral"

	"github.com/convene-p2p/convene/room/roomnet"
)

// TestCursorUpdateWireBytes measures one cursor update {x,y} as it travels:
// the ephemeral delta, the envelope, the signed pubsub message and the RPC
// frame on the GossipSub stream, captured at the receiver.
func TestCursorUpdateWireBytes(t *testing.T) {
	a, b := newNode(t, Config{}), newNode(t, Config{})
	ma, mb := join(t, a, "lobby"), join(t, b, "lobby")
	connect(t, a.h, b.h)
	ma.waitPeerUp(t, 5*time.Second, b.id())

	const epoch = 1_767_225_600_000 // unix ms, as the room layer uses
	s, err := ephemeral.New(ephemeral.Config{Self: ephemeral.PeerID(a.id()), Epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(time.Now(), "cursor", []byte(`{"x":123,"y":456}`)); err != nil {
		t.Fatal(err)
	}
	_ = s.EncodeDelta()
	if _, err := s.Set(time.Now(), "cursor", []byte(`{"x":124,"y":457}`)); err != nil {
		t.Fatal(err)
	}
	delta := s.EncodeDelta()
	if len(delta) == 0 {
		t.Fatal("empty delta")
	}
	m := roomnet.Message{Kind: roomnet.KindDelta, Epoch: epoch, State: delta}
	env := mustEncode(t, m)

	b.tracer.recordRPCs(true)
	if err := ma.t.Publish(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	mb.waitFor(t, 5*time.Second, "the delta", func(ev roomnet.Event) bool {
		return ev.Kind == roomnet.EventMessage && ev.Msg.Kind == roomnet.KindDelta
	})
	b.tracer.recordRPCs(false)

	var msg *pb.Message
	for _, rpc := range b.tracer.received() {
		for _, pm := range rpc.GetPublish() {
			if pm.GetTopic() == TopicName("lobby") {
				msg = pm
			}
		}
	}
	if msg == nil {
		t.Fatal("no RPC carrying the message was captured")
	}
	alone := &pb.RPC{Publish: []*pb.Message{msg}}
	rpcSize := proto.Size(alone)
	frame := rpcSize + len(binary.AppendUvarint(nil, uint64(rpcSize)))

	t.Logf("one cursor update {x,y} (value %d B):", len(`{"x":124,"y":457}`))
	t.Logf("  ephemeral delta            %4d B", len(delta))
	t.Logf("  envelope (delta + %d B)     %4d B", len(env)-len(delta), len(env))
	t.Logf("  pubsub fields: from %d B, seqno %d B, topic %d B, signature %d B, key %d B",
		len(msg.GetFrom()), len(msg.GetSeqno()), len(msg.GetTopic()), len(msg.GetSignature()), len(msg.GetKey()))
	t.Logf("  pubsub Message (protobuf)  %4d B", proto.Size(msg))
	t.Logf("  RPC + varint length frame  %4d B  (on the GossipSub stream, per receiving peer)", frame)
	t.Logf("  + yamux header 12 B + TLS 1.3 record 22 B = %d B in the secure channel (plus TCP/IP headers)", frame+12+22)

	if len(env)-len(delta) != 7 {
		t.Errorf("envelope overhead %d B, want 7 (1 header byte + 6-byte epoch)", len(env)-len(delta))
	}
	if len(msg.GetData()) != len(env) {
		t.Errorf("pubsub data %d B, envelope %d B", len(msg.GetData()), len(env))
	}
}
