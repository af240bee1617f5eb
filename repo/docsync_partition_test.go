package repo_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/repo"
)

// syncWait bounds the waits for sync in these tests: far above what sync
// takes on loopback, so a loaded machine does not fail them.
const syncWait = 30 * time.Second

// waitUntil polls cond (every 10 ms) until it holds or d runs out.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !holdsWithin(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// holdsWithin polls cond every 10 ms until it holds (true) or d has
// passed (false): waitUntil for a caller that acts on the timeout itself.
func holdsWithin(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// link connects a to b and waits until both see the connection.
func link(t *testing.T, a, b *repo.Repo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), syncWait)
	defer cancel()
	if err := a.Connect(ctx, b.Addrs()[0].String()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, syncWait, "both ends connected", func() bool {
		return a.Host().Network().Connectedness(b.ID()) == network.Connected &&
			b.Host().Network().Connectedness(a.ID()) == network.Connected
	})
}

// unlink closes every connection between a and b and waits until neither
// sees one (LocalConfig has no discovery, so nothing redials).
func unlink(t *testing.T, a, b *repo.Repo) {
	t.Helper()
	_ = a.Host().Network().ClosePeer(b.ID())
	_ = b.Host().Network().ClosePeer(a.ID())
	waitUntil(t, syncWait, "both ends disconnected", func() bool {
		return a.Host().Network().Connectedness(b.ID()) != network.Connected &&
			b.Host().Network().Connectedness(a.ID()) != network.Connected
	})
}

func linesInit(tx *doc.Tx) error { return tx.Set(doc.Path{"lines"}, []any{}) }

func lines(t *testing.T, h *doc.Handle) []string {
	t.Helper()
	v, ok, err := h.Get(doc.Path{"lines"})
	if err != nil || !ok {
		t.Fatalf("lines: %v %v", ok, err)
	}
	var out []string
	for _, x := range v.([]any) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func appendLine(t *testing.T, h *doc.Handle, s string) {
	t.Helper()
	if err := h.Change(func(tx *doc.Tx) error { return tx.Append(doc.Path{"lines"}, s) }); err != nil {
		t.Fatal(err)
	}
}

// Two peers share a document, are cut apart, and both write while apart
// (neither sees the other's lines then); once they reconnect, both have
// every line of both sides, in the same order, with the same heads.
func TestOfflineEditsOnBothSidesOfAPartitionMerge(t *testing.T) {
	ctx := context.Background()
	a, b := newRepo(t, nil), newRepo(t, nil)
	ha, err := a.DocWith(ctx, "journal", linesInit)
	if err != nil {
		t.Fatal(err)
	}
	hb, err := b.DocWith(ctx, "journal", linesInit)
	if err != nil {
		t.Fatal(err)
	}
	appendLine(t, ha, "before")
	link(t, b, a)
	waitUntil(t, syncWait, "the first line on b", func() bool { return ha.Heads().Equal(hb.Heads()) })

	unlink(t, a, b)
	const n = 20
	for i := 0; i < n; i++ {
		appendLine(t, ha, fmt.Sprintf("a%d", i))
		appendLine(t, hb, fmt.Sprintf("b%d", i))
	}
	// Apart, each side has only its own lines.
	la, lb := lines(t, ha), lines(t, hb)
	if len(la) != n+1 || len(lb) != n+1 || slices.Contains(la, "b0") || slices.Contains(lb, "a0") {
		t.Fatalf("while apart: a %v, b %v", la, lb)
	}

	link(t, a, b)
	waitUntil(t, syncWait, "equal heads after the partition", func() bool { return ha.Heads().Equal(hb.Heads()) })
	la, lb = lines(t, ha), lines(t, hb)
	if !slices.Equal(la, lb) {
		t.Fatalf("after merge a %v != b %v", la, lb)
	}
	if len(la) != 2*n+1 {
		t.Fatalf("after merge %d lines, want %d: %v", len(la), 2*n+1, la)
	}
	for i := 0; i < n; i++ {
		for _, s := range []string{fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)} {
			if !slices.Contains(la, s) {
				t.Fatalf("line %q lost: %v", s, la)
			}
		}
	}
	// Each side's lines keep their own order.
	ia, ib := slices.Index(la, "a0"), slices.Index(la, "b0")
	for i := 1; i < n; i++ {
		if j := slices.Index(la, fmt.Sprintf("a%d", i)); j < ia {
			t.Fatalf("a's lines out of order: %v", la)
		} else {
			ia = j
		}
		if j := slices.Index(la, fmt.Sprintf("b%d", i)); j < ib {
			t.Fatalf("b's lines out of order: %v", la)
		} else {
			ib = j
		}
	}
}

// b deletes a document that a keeps editing (and announcing); a second
// document that a also edits shows each session ran. Through three
// disconnects and reconnects the deleted document stays gone on b: HasDoc
// false, Doc ErrDeleted, no doc-created event, not in DocIDs; a keeps its
// copy (deletion is local).
func TestDeletedDocDoesNotComeBackThroughSync(t *testing.T) {
	ctx := context.Background()
	a, b := newRepo(t, nil), newRepo(t, nil)
	ga, err := a.DocWith(ctx, "gone", linesInit)
	if err != nil {
		t.Fatal(err)
	}
	la, err := a.DocWith(ctx, "alive", linesInit)
	if err != nil {
		t.Fatal(err)
	}
	gb, err := b.DocWith(ctx, "gone", linesInit)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.DocWith(ctx, "alive", linesInit)
	if err != nil {
		t.Fatal(err)
	}
	appendLine(t, ga, "x")
	link(t, a, b)
	waitUntil(t, syncWait, "gone synced before the delete", func() bool { return ga.Heads().Equal(gb.Heads()) })

	w := b.Watch()
	defer w.Close()
	if err := b.DeleteDoc(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 3; round++ {
		appendLine(t, ga, fmt.Sprintf("after-delete-%d", round))
		appendLine(t, la, fmt.Sprintf("alive-%d", round))
		waitUntil(t, syncWait, "alive synced to b", func() bool { return la.Heads().Equal(lb.Heads()) })
		unlink(t, a, b)
		appendLine(t, ga, fmt.Sprintf("offline-%d", round))
		appendLine(t, la, fmt.Sprintf("offline-alive-%d", round))
		link(t, b, a)
		waitUntil(t, syncWait, "alive synced to b after the reconnect", func() bool { return la.Heads().Equal(lb.Heads()) })
		if b.HasDoc("gone") || slices.Contains(b.DocIDs(), "gone") {
			t.Fatalf("round %d: the deleted document is back on b (DocIDs %v)", round, b.DocIDs())
		}
		if _, err := b.Doc(ctx, "gone"); !errors.Is(err, repo.ErrDeleted) {
			t.Fatalf("round %d: b.Doc(gone) = %v, want ErrDeleted", round, err)
		}
	}
	// b's events since the delete: doc-destroyed for gone, never
	// doc-created.
	destroyed := false
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		ev, err := w.Next(ctx)
		cancel()
		if err != nil {
			break // no more buffered events
		}
		if ev.Doc == "gone" && ev.Type == repo.DocCreated {
			t.Fatalf("doc-created for the deleted document on b: %+v", ev)
		}
		destroyed = destroyed || (ev.Doc == "gone" && ev.Type == repo.DocDestroyed)
	}
	if !destroyed {
		t.Fatal("no doc-destroyed for gone on b")
	}
	if !a.HasDoc("gone") || len(lines(t, ga)) != 7 {
		t.Fatalf("a lost its copy: HasDoc %v", a.HasDoc("gone"))
	}
}
