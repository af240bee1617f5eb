package gossip

import (
	"testing"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

func preRPC(topic string, author peer.ID, n int) *pubsub.RPC {
	rpc := &pubsub.RPC{}
	for range n {
		rpc.Publish = append(rpc.Publish, &pb.Message{From: []byte(author), Topic: &topic})
	}
	return rpc
}

// The pre-check keeps Burst messages per (room, forwarder, claimed author)
// of one RPC when the forwarder is the author, 2 × Burst of relayed copies,
// and drops the rest before the queue; a forger naming an
// honest author drains only its own pair; only a forwarder that is the
// claimed author is charged violations; other rooms are separate.
func TestPrecheckPerForwarderAndAuthor(t *testing.T) {
	const burst = 5
	viol := newRateViolations(1, 64)
	var router counters
	c := newPrecheck(float64(rate.Every(1<<62)), burst, 64, viol, &router)
	honest, forger, flooder := randomPeerID(t), randomPeerID(t), randomPeerID(t)
	lobby, other := TopicName("lobby"), TopicName("other")

	rpc := preRPC(lobby, honest, 3*burst)
	if err := c.inspect(forger, rpc); err != nil {
		t.Fatal(err)
	}
	if len(rpc.Publish) != 2*burst {
		t.Fatalf("forger's RPC naming honest: %d kept, want %d (relayed copies: twice the bucket)", len(rpc.Publish), 2*burst)
	}
	rpc = preRPC(lobby, honest, burst)
	_ = c.inspect(honest, rpc)
	if len(rpc.Publish) != burst {
		t.Fatalf("honest author's own messages after the forgery: %d kept, want %d", len(rpc.Publish), burst)
	}
	if viol.score(honest) != 0 || viol.score(forger) != 0 {
		t.Fatalf("charged a peer that is not the claimed author: honest %v, forger %v", viol.score(honest), viol.score(forger))
	}
	rpc = preRPC(lobby, flooder, 4*burst)
	_ = c.inspect(flooder, rpc)
	if len(rpc.Publish) != burst || viol.score(flooder) >= graylistThreshold {
		t.Fatalf("flooder: %d kept (want %d), score %v (want below %v)", len(rpc.Publish), burst, viol.score(flooder), graylistThreshold)
	}
	rpc = preRPC(other, flooder, burst)
	_ = c.inspect(flooder, rpc)
	if len(rpc.Publish) != burst {
		t.Fatalf("another room shares the bucket: %d kept", len(rpc.Publish))
	}
	if got, want := router[cPreLimited].Load(), uint64(burst+3*burst); got != want {
		t.Errorf("PreLimited %d, want %d", got, want)
	}
}
