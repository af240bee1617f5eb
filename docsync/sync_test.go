package docsync

import (
	"context"
	"testing"
	"time"

	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/ephemeral"
)

const wait = 20 * time.Second

// Two peers sync a document both ways as soon as they connect; each
// side's watcher sees a Changed event whose Origin is the other peer.
func TestSyncBothWaysOnConnect(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a, b := newNode(t, mn, Config{}), newNode(t, mn, Config{})
	ha := a.open(t, "notes")
	mustChange(t, ha, func(tx *doc.Tx) error { return tx.Set(doc.Path{"from-a"}, "hi") })
	hb := b.open(t, "notes")
	wb := hb.Watch()
	defer wb.Close()
	connect(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ev, err := wb.Next(ctx)
	if err != nil || ev.Type != doc.Changed || ev.Origin.Peer != ephemeral.PeerID(a.h.ID()) {
		t.Fatalf("b's first event: %+v %v, want Changed from a", ev, err)
	}
	if v := value(t, hb); v["from-a"] != "hi" {
		t.Fatalf("b has %v", v)
	}
	wa := ha.Watch()
	defer wa.Close()
	mustChange(t, hb, func(tx *doc.Tx) error { return tx.Set(doc.Path{"from-b"}, "yo") })
	for {
		ev, err := wa.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == doc.Changed && ev.Origin.Peer == ephemeral.PeerID(b.h.ID()) {
			break
		}
	}
	if v := value(t, ha); v["from-b"] != "yo" {
		t.Fatalf("a has %v", v)
	}
	eventually(t, wait, "equal heads", func() bool { return ha.Heads().Equal(hb.Heads()) })
}
