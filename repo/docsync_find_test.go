package repo_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/docsync"
	"github.com/convene-p2p/convene/repo"
)

// FindDoc for an ID no peer has returns ErrUnavailable once every asked
// peer said so: well before FindTimeout (set to 60 s here, so the answer
// cannot be the timeout), with one Unavailable from each peer.
func TestFindDocNobodyHasIsUnavailableWhenEveryPeerSaidSo(t *testing.T) {
	ctx := context.Background()
	const timeout = 60 * time.Second
	f := newRepo(t, func(c *repo.Config) { c.DocSync.FindTimeout = timeout })
	p1, p2 := newRepo(t, nil), newRepo(t, nil)
	if _, err := p1.Doc(ctx, "something-else"); err != nil {
		t.Fatal(err)
	}
	link(t, f, p1)
	link(t, f, p2)
	// Both sessions open (f's Hello sent), so both peers are asked.
	waitUntil(t, syncWait, "two sessions", func() bool { return f.SyncStats().Sessions >= 2 })
	start := time.Now()
	h, err := f.FindDoc(ctx, "nobody-has-this")
	took := time.Since(start)
	if err == nil && h != nil && findDocBug(t, h) {
		t.Fatal(findDocBugMsg)
	}
	if !errors.Is(err, docsync.ErrUnavailable) {
		t.Fatalf("FindDoc = %v, want ErrUnavailable", err)
	}
	if took >= timeout/2 {
		t.Fatalf("FindDoc took %v: the timeout (%v), not the peers' answers", took, timeout)
	}
	if h == nil || !h.Empty() {
		t.Fatalf("handle %v, want the open empty handle", h)
	}
	if got := f.SyncStats().UnavailableIn; got < 2 {
		t.Fatalf("UnavailableIn = %d, want one from each of 2 peers", got)
	}
	t.Logf("unavailable after %v", took)
}

// A server whose Allow policy denies peer m: m's FindDoc gets nothing
// (ErrUnavailable, empty handle, even as the server keeps writing), m's
// own writes to the ID never reach the server, and an honest peer on the
// same server gets the document and keeps syncing it both ways.
func TestDeniedPeerGetsNothingAndHonestPeerKeepsSyncing(t *testing.T) {
	ctx := context.Background()
	m := newRepo(t, func(c *repo.Config) { c.DocSync.FindTimeout = syncWait })
	denied := m.ID()
	s := newRepo(t, func(c *repo.Config) {
		c.DocSync.Allow = func(p peer.ID, id string) docsync.Access {
			if p == denied {
				return docsync.Deny
			}
			return docsync.ReadWrite
		}
	})
	o := newRepo(t, nil)
	hs, err := s.DocWith(ctx, "secret", linesInit)
	if err != nil {
		t.Fatal(err)
	}
	appendLine(t, hs, "s0")
	link(t, m, s)
	link(t, o, s)

	hm, err := m.FindDoc(ctx, "secret")
	if err == nil && findDocBug(t, hm) {
		// The bug also keeps the honest peer from ever getting the
		// document: its FindDoc handle's empty genesis change and the
		// server's Init genesis are two changes of the same genesis
		// actor with seq 1 (the honest FindDoc below then times out).
		t.Fatal(findDocBugMsg + "; and a FindDoc handle then never syncs with a document made with an Init (two seq-1 changes of the genesis actor)")
	}
	if !errors.Is(err, docsync.ErrUnavailable) {
		t.Fatalf("denied FindDoc = %v, want ErrUnavailable", err)
	}
	ho, err := o.FindDoc(ctx, "secret")
	if err != nil {
		t.Fatalf("honest FindDoc: %v", err)
	}
	if got := lines(t, ho); !slices.Equal(got, []string{"s0"}) {
		t.Fatalf("honest peer has %v", got)
	}
	// The denied peer writes into its own copy; the server keeps writing.
	if err := hm.Change(func(tx *doc.Tx) error { return tx.Set(doc.Path{"evil"}, "yes") }); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		appendLine(t, hs, fmt.Sprintf("s%d", i))
		appendLine(t, ho, fmt.Sprintf("o%d", i))
	}
	waitUntil(t, syncWait, "server and honest peer converge", func() bool { return hs.Heads().Equal(ho.Heads()) })
	if got := lines(t, hs); len(got) != 11 {
		t.Fatalf("server has %v", got)
	}
	if v, ok, _ := hs.Get(doc.Path{"evil"}); ok {
		t.Fatalf("the denied peer's write reached the server: %v", v)
	}
	if v, ok, _ := ho.Get(doc.Path{"evil"}); ok {
		t.Fatalf("the denied peer's write reached the honest peer: %v", v)
	}
	if v, _ := hm.Value(); v["lines"] != nil {
		t.Fatalf("the denied peer got the document: %v", v)
	}
	if s.SyncStats().Refused == 0 {
		t.Fatal("server counted no refusal")
	}
}

const findDocBugMsg = "bug: repo.FindDoc opens the handle with DocWith(ctx, id, func(*doc.Tx) error { return nil }); doc.Open runs that no-op Init as a genesis that commits an empty change (AllowEmpty), so the handle is never Empty and docsync.Find returns nil at once, no peer asked"

// findDocBug reports whether h, just returned by FindDoc without an error,
// holds no data at all: the FindDoc bug (findDocBugMsg).
func findDocBug(t *testing.T, h *doc.Handle) bool {
	t.Helper()
	v, err := h.Value()
	return err == nil && len(v) == 0
}
