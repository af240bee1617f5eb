package docsync

import (
	"context"
	"fmt"
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

// Two peers that both opened a document empty, then met: whichever of them
// makes the first change, the other gets it. Each says Have with no heads,
// each answers the other's Have with Unavailable ("nor do I"); that answer
// must not make the peer forget that the other one asked. It did (the
// peer dropped its want on the Unavailable), so the first change of the
// side whose Have arrived second was never sent (issue 11: 2 of 12 runs
// of the real-process test). Which side that is depends on timing, so
// each direction runs several times, with the change made after both
// answers ("settled") and at once, so the answer may arrive after the
// change was sent (the pair it made must survive that answer too).
func TestFirstChangeAfterBothOpenedEmptyIsDelivered(t *testing.T) {
	for _, when := range []string{"settled", "at-once"} {
		for _, editor := range []string{"a", "b"} {
			for i := range 6 {
				t.Run(fmt.Sprintf("%s/%s/%d", when, editor, i), func(t *testing.T) {
					firstChangeAfterBothEmpty(t, editor, when == "settled")
				})
			}
		}
	}
}

func firstChangeAfterBothEmpty(t *testing.T, editor string, settled bool) {
	mn := mocknet.New()
	defer mn.Close()
	a, b := newNode(t, mn, Config{}), newNode(t, mn, Config{})
	ha, hb := a.open(t, "notes"), b.open(t, "notes")
	connect(t, a, b)
	if settled {
		// Both have answered "nor do I" before anyone writes.
		eventually(t, wait, "both Unavailable answers", func() bool {
			return a.svc.Stats().UnavailableIn >= 1 && b.svc.Stats().UnavailableIn >= 1
		})
	}
	from, to := ha, hb
	if editor == "b" {
		from, to = hb, ha
	}
	mustChange(t, from, func(tx *doc.Tx) error { return tx.Set(doc.Path{"first"}, editor) })
	eventually(t, wait, "the first change at the other peer", func() bool { return to.Contains(from.Heads()) })
	// A second change the same way, then one back, on the pair the first
	// made.
	mustChange(t, from, func(tx *doc.Tx) error { return tx.Set(doc.Path{"second"}, editor) })
	eventually(t, wait, "the second change at the other peer", func() bool { return to.Contains(from.Heads()) })
	mustChange(t, to, func(tx *doc.Tx) error { return tx.Set(doc.Path{"reply"}, "ok") })
	eventually(t, wait, "equal heads", func() bool { return ha.Heads().Equal(hb.Heads()) })
}
