package p2p

import (
	"testing"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
)

// A closed network: five hosts on loopback, one bootstrap node, every node a
// DHT server on a private prefix, nobody told about anybody but the
// bootstrap node. Three hosts rendezvous on room-x and must find and
// connect to each other; a fourth on room-y must not find them.
func TestRendezvousFindsRoomPeersInClosedDHT(t *testing.T) {
	const prefix = "/convene-test"

	boot := LocalConfig()
	boot.DHT = DHTServer // a bootstrap node has no Bootstrap of its own
	boot.DHTPrefix = prefix
	bh := newHost(t, boot)
	bootAddr := bh.Addrs()[0].String()

	type node struct {
		h   *Host
		rec *recorder
	}
	mk := func() node {
		cfg := LocalConfig()
		cfg.Bootstrap = []string{bootAddr} // DHTAuto + Bootstrap = server
		cfg.DHTPrefix = prefix
		rec := newRecorder()
		cfg.hooks = rec.hooks()
		h := newHost(t, cfg)
		if h.DHT() == nil || h.DHT().Mode() != dht.ModeServer {
			t.Fatalf("DHTAuto with Bootstrap did not start a DHT server")
		}
		return node{h, rec}
	}
	x := []node{mk(), mk(), mk()}
	y := mk()

	start := time.Now()
	for _, n := range x {
		t.Cleanup(n.h.Rendezvous("room-x"))
	}
	t.Cleanup(y.h.Rendezvous("room-y"))

	others := func(i int) []peer.ID {
		var ids []peer.ID
		for j, n := range x {
			if j != i {
				ids = append(ids, n.h.ID())
			}
		}
		return ids
	}
	waitFor(t, 30*time.Second, "room-x peers to find and connect to each other", func() bool {
		for i, n := range x {
			found := n.rec.foundBy("rendezvous", "room-x")
			for _, p := range others(i) {
				if !found[p] || !n.h.connected(p) {
					return false
				}
			}
		}
		return true
	})
	t.Logf("DHT rendezvous: 3 peers found and connected to each other %v after Rendezvous", time.Since(start).Round(time.Millisecond))

	// room-y must have looked (two more complete rounds from now) and seen
	// nobody: rendezvous is per namespace.
	rounds := y.rec.roundsDone("room-y")
	waitFor(t, 10*time.Second, "two more room-y lookups", func() bool {
		return y.rec.roundsDone("room-y") >= rounds+2
	})
	if got := y.rec.foundBy("rendezvous", "room-y"); len(got) != 0 {
		t.Errorf("room-y rendezvous found %v, want nobody", got)
	}
	if got := y.rec.foundBy("rendezvous", "room-x"); len(got) != 0 {
		t.Errorf("room-y host reported room-x peers: %v", got)
	}
	for i, n := range x {
		found := n.rec.foundBy("rendezvous", "room-x")
		if len(found) != 2 || found[y.h.ID()] || found[bh.ID()] {
			t.Errorf("x[%d] room-x rendezvous found %v, want exactly the other two room-x peers", i, found)
		}
	}
}
