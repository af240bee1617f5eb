package repo_test

import (
	"context"
	"testing"
	"time"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/ephemeral"
	"github.com/convene-p2p/convene/repo"
)

// Two Repos on loopback TCP: a document changed on one reaches the other
// with no call but Doc, and back; events carry the remote peer as Origin.
func TestDocsSyncBetweenReposOnConnect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := repo.New(ctx, repo.LocalConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := repo.New(ctx, repo.LocalConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ha, err := a.Doc(ctx, "shared-notes")
	if err != nil {
		t.Fatal(err)
	}
	if err := ha.Change(func(tx *doc.Tx) error { return tx.Set(doc.Path{"a"}, "1") }); err != nil {
		t.Fatal(err)
	}
	if err := b.Connect(ctx, a.Addrs()[0].String()); err != nil {
		t.Fatal(err)
	}
	hb, err := b.Doc(ctx, "shared-notes")
	if err != nil {
		t.Fatal(err)
	}
	wb := hb.Watch()
	defer wb.Close()
	for hb.Empty() {
		ev, err := wb.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == doc.Changed && ev.Origin.Peer != ephemeral.PeerID(a.ID()) {
			t.Fatalf("origin %v, want a", ev.Origin)
		}
	}
	wa := ha.Watch()
	defer wa.Close()
	if err := hb.Change(func(tx *doc.Tx) error { return tx.Set(doc.Path{"b"}, "2") }); err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := wa.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == doc.Changed && ev.Origin.Peer == ephemeral.PeerID(b.ID()) {
			break
		}
	}
	if v, _, _ := ha.Get(doc.Path{"b"}); v != "2" {
		t.Fatalf("a has b = %v", v)
	}
}
