package docsync

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/convene-p2p/convene/doc"
)

// Find for an ID no peer has returns ErrUnavailable once every asked peer
// answered Unavailable: long before FindTimeout (60 s here, so the answer
// cannot be the timeout), one Unavailable from each of the two peers.
func TestFindNobodyHasIsUnavailableWhenEveryPeerSaidSo(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	const timeout = 60 * time.Second
	f := newNode(t, mn, Config{FindTimeout: timeout})
	p1, p2 := newNode(t, mn, Config{}), newNode(t, mn, Config{})
	p1.open(t, "something-else")
	connect(t, f, p1)
	connect(t, f, p2)
	// Both sessions open (our Hello sent), so both peers are asked.
	eventually(t, wait, "two sessions", func() bool { return f.svc.Stats().Sessions >= 2 })
	h := f.open(t, "nobody-has-this")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start := time.Now()
	err := f.svc.Find(ctx, h)
	took := time.Since(start)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Find = %v, want ErrUnavailable", err)
	}
	if took >= timeout/2 {
		t.Fatalf("Find took %v: the timeout, not the peers' answers", took)
	}
	if got := f.svc.Stats().UnavailableIn; got < 2 {
		t.Fatalf("UnavailableIn = %d, want one from each of 2 peers", got)
	}
	if _, ok := p1.docs.Resolve(f.h.ID(), DocDigest(f.h.ID(), "nobody-has-this")); !h.Empty() || ok {
		t.Fatal("the find created data or a document somewhere")
	}
	t.Logf("unavailable after %v", took)
}

// A server whose Allow denies peer m: m's Find is ErrUnavailable and m's
// copy stays without the server's data while the server keeps writing;
// m's own writes never reach the server; an honest peer finds the
// document and keeps syncing it both ways with the server.
func TestDeniedPeerGetsNothingHonestPeerKeepsSyncing(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	m := newNode(t, mn, Config{FindTimeout: wait})
	var denied peer.ID = m.h.ID()
	s := newNode(t, mn, Config{Allow: func(p peer.ID, id string) Access {
		if p == denied {
			return Deny
		}
		return ReadWrite
	}})
	o := newNode(t, mn, Config{})
	hs := s.open(t, "secret")
	mustChange(t, hs, func(tx *doc.Tx) error { return tx.Set(doc.Path{"s"}, int64(0)) })
	connect(t, m, s)
	connect(t, o, s)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	hm := m.open(t, "secret")
	if err := m.svc.Find(ctx, hm); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("denied Find = %v, want ErrUnavailable", err)
	}
	ho := o.open(t, "secret")
	if err := o.svc.Find(ctx, ho); err != nil {
		t.Fatalf("honest Find = %v", err)
	}
	mustChange(t, hm, func(tx *doc.Tx) error { return tx.Set(doc.Path{"evil"}, "yes") })
	for i := 1; i <= 5; i++ {
		mustChange(t, hs, func(tx *doc.Tx) error { return tx.Set(doc.Path{"s"}, int64(i)) })
		mustChange(t, ho, func(tx *doc.Tx) error { return tx.Set(doc.Path{"o"}, int64(i)) })
	}
	eventually(t, wait, "server and honest peer converge", func() bool {
		v := value(t, hs)
		return hs.Heads().Equal(ho.Heads()) && v["o"] == int64(5) && v["s"] == int64(5)
	})
	if v := value(t, hs); v["evil"] != nil {
		t.Fatalf("the denied peer's write reached the server: %v", v)
	}
	if v := value(t, ho); v["evil"] != nil {
		t.Fatalf("the denied peer's write reached the honest peer: %v", v)
	}
	if v := value(t, hm); v["s"] != nil || v["o"] != nil {
		t.Fatalf("the denied peer got the document: %v", v)
	}
	if s.svc.Stats().Refused == 0 {
		t.Fatal("server counted no refusal")
	}
}
