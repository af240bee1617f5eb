package docsync

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"go.uber.org/goleak"

	"github.com/convene-p2p/convene/doc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memDocs is a Docs over handles in memory: Lookup finds only documents
// opened with node.open (as a repo finds only what it has).
type memDocs struct {
	mu      sync.Mutex
	hs      map[string]*doc.Handle
	deleted map[string]bool
}

func (d *memDocs) Lookup(_ context.Context, id string) (*doc.Handle, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hs[id], d.deleted[id], nil
}

func (d *memDocs) Resolve(p peer.ID, g Digest) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range d.hs {
		if DocDigest(p, id) == g {
			return id, true
		}
	}
	return "", false
}

// node is one peer: a mocknet host, its documents and its Service.
type node struct {
	h    host.Host
	docs *memDocs
	svc  *Service
}

func newNode(t testing.TB, mn mocknet.Mocknet, cfg Config) *node {
	t.Helper()
	h, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range mn.Hosts() {
		if o.ID() != h.ID() {
			if _, err := mn.LinkPeers(h.ID(), o.ID()); err != nil {
				t.Fatal(err)
			}
		}
	}
	n := &node{h: h, docs: &memDocs{hs: map[string]*doc.Handle{}, deleted: map[string]bool{}}}
	n.svc, err = New(h, n.docs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = n.svc.Close()
		n.docs.mu.Lock()
		hs := n.docs.hs
		n.docs.mu.Unlock()
		for _, h := range hs {
			_ = h.Close(context.Background())
		}
	})
	return n
}

// open opens (or returns) document id here and tracks it.
func (n *node) open(t testing.TB, id string) *doc.Handle {
	t.Helper()
	n.docs.mu.Lock()
	h := n.docs.hs[id]
	n.docs.mu.Unlock()
	if h != nil {
		return h
	}
	h, err := doc.Open(context.Background(), id, doc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n.docs.mu.Lock()
	n.docs.hs[id] = h
	n.docs.mu.Unlock()
	n.svc.Track(h)
	return h
}

func connect(t testing.TB, a, b *node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.h.Connect(ctx, peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// until polls cond every 5 ms until it holds (true) or d has passed
// (false): the one deadline wait of this package's tests (the sleep is the
// polling interval, not synchronisation).
func until(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// eventually waits for cond up to d and fails the test if it never holds.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !until(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

func mustChange(t testing.TB, h *doc.Handle, fn func(tx *doc.Tx) error) {
	t.Helper()
	if err := h.Change(fn); err != nil {
		t.Fatal(err)
	}
}

func value(t testing.TB, h *doc.Handle) map[string]any {
	t.Helper()
	v, err := h.Value()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
