package docsync

import (
	"context"
	"slices"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/convene-p2p/convene/doc"
)

// newPubSub starts a GossipSub (flood publishing, as the repo's router) on
// h, stopped at cleanup after everything registered later.
func newPubSub(t *testing.T, h host.Host) *pubsub.PubSub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithFloodPublish(true))
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// announcing is a node whose Service announces on its own GossipSub.
func announcing(t *testing.T, mn mocknet.Mocknet) *node {
	t.Helper()
	h, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	ps := newPubSub(t, h)
	n := &node{h: h, docs: &memDocs{hs: map[string]*doc.Handle{}, deleted: map[string]bool{}}}
	if n.svc, err = New(h, n.docs, Config{PubSub: ps}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = n.svc.Close()
		for _, h := range n.docs.hs {
			_ = h.Close(context.Background())
		}
	})
	return n
}

// A peer whose every topic peer syncs the document with it already does
// not announce its changes (each gets them over its session): two peers
// sharing a document send no announcement. Once a peer without a session
// for it (here a plain GossipSub peer) is on the topic, changes are
// announced again.
func TestAnnouncementsSkippedWhenEveryTopicPeerSyncsTheDoc(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a, b := announcing(t, mn), announcing(t, mn)
	connect(t, a, b)
	ha, hb := a.open(t, "d"), b.open(t, "d")
	mustChange(t, ha, func(tx *doc.Tx) error { return tx.Set(doc.Path{"k"}, "v0") })
	eventually(t, 10*time.Second, "b has a's first change", func() bool { return hb.Heads().Equal(ha.Heads()) })
	eventually(t, 10*time.Second, "b on a's announce topic", func() bool {
		return slices.Contains(a.svc.topic.ListPeers(), b.h.ID())
	})
	// The first change may have been announced while b's pair was still
	// opening; what counts is that the next one is not.
	skipped, out := a.svc.Stats().AnnouncementsSkipped, a.svc.Stats().AnnouncementsOut
	mustChange(t, ha, func(tx *doc.Tx) error { return tx.Set(doc.Path{"k"}, "v1") })
	eventually(t, 10*time.Second, "a's announcer skips the change", func() bool {
		return a.svc.Stats().AnnouncementsSkipped > skipped
	})
	eventually(t, 10*time.Second, "b has it by sync", func() bool { return hb.Heads().Equal(ha.Heads()) })
	if n := a.svc.Stats().AnnouncementsOut - out; n != 0 {
		t.Errorf("a announced its second change %d times to a peer that syncs the document with it", n)
	}

	// A plain GossipSub peer on the topic: it has no session with a.
	e, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	eps := newPubSub(t, e)
	et, err := eps.Join(AnnounceTopic(""))
	if err != nil {
		t.Fatal(err)
	}
	esub, err := et.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer et.Close()
	defer esub.Cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Connect(ctx, peer.AddrInfo{ID: a.h.ID(), Addrs: a.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "e on a's announce topic", func() bool {
		return slices.Contains(a.svc.topic.ListPeers(), e.ID())
	})
	mustChange(t, ha, func(tx *doc.Tx) error { return tx.Set(doc.Path{"k"}, "v2") })
	m, err := esub.Next(ctx)
	if err != nil {
		t.Fatalf("e received no announcement: %v (a: %+v)", err, a.svc.Stats())
	}
	got, err := DecodeAnnouncement(m.Data)
	if err != nil || got.Digest != AnnounceDigest("d") || !got.Heads.Equal(ha.Heads()) {
		t.Fatalf("e got %+v (%v), want AnnounceDigest(d) and a's heads", got, err)
	}
}
