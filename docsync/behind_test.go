package docsync

import (
	"bufio"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/convene-p2p/convene/doc"
)

// longDoc opens id on n with 1000 changes and returns the handle and the
// document as it was after its first change (a small prefix of it, as a
// peer that ran the shared genesis change has).
func longDoc(t *testing.T, n *node, id string) (*doc.Handle, []byte) {
	t.Helper()
	h := n.open(t, id)
	mustChange(t, h, func(tx *doc.Tx) error { return tx.Set(doc.Path{"n"}, -1) })
	prefix := h.Save()
	for i := range 999 {
		mustChange(t, h, func(tx *doc.Tx) error { return tx.Set(doc.Path{"n"}, i) })
	}
	return h, prefix
}

// A peer behind (it holds the first change of a 1000-change document, not
// nothing) gets the snapshot, not the change-by-change sync: the bytes it
// receives stay within 2× Save(). Before, only a peer with empty heads got
// the snapshot and this one received the plain Automerge first sync.
func TestBehindPeerFetchIsSnapshotFirst(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a, b := newNode(t, mn, Config{}), newNode(t, mn, Config{})
	ha, prefix := longDoc(t, a, "long")
	save := len(ha.Save())
	hb := b.open(t, "long")
	if err := hb.LoadIncremental(doc.Origin{}, prefix); err != nil {
		t.Fatal(err)
	}
	if hb.Empty() || hb.Heads().Equal(ha.Heads()) {
		t.Fatal("b should hold a prefix of the document")
	}
	connect(t, a, b)
	eventually(t, wait, "b has a's heads", func() bool { return hb.Heads().Equal(ha.Heads()) })
	eventually(t, wait, "the link is quiet", func() bool { return quiet(a, b) })
	st := b.svc.Stats()
	t.Logf("Save() %d B; b received %d B (%.2f× Save()) in frames %v; a: %d behind snapshots, %d stale syncs dropped",
		save, st.BytesIn, float64(st.BytesIn)/float64(save), st.FramesIn, a.svc.Stats().BehindSnapshots, a.svc.Stats().StaleSyncs)
	if st.FramesIn[Snapshot] != 1 {
		t.Fatalf("%d snapshots, want 1", st.FramesIn[Snapshot])
	}
	if st.BytesIn > uint64(2*save) {
		t.Fatalf("b received %d bytes, over 2× Save() = %d", st.BytesIn, 2*save)
	}
	if v := value(t, hb)["n"]; v != value(t, ha)["n"] {
		t.Fatalf("b has n = %v, a has %v", v, value(t, ha)["n"])
	}
}

// A peer behind with a change of its own made offline (diverged: a head
// the holder lacks) keeps the plain sync and both sides end with both
// changes.
func TestDivergedPeerBehindConvergesWithBothChanges(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a, b := newNode(t, mn, Config{}), newNode(t, mn, Config{})
	ha, prefix := longDoc(t, a, "long")
	hb := b.open(t, "long")
	if err := hb.LoadIncremental(doc.Origin{}, prefix); err != nil {
		t.Fatal(err)
	}
	mustChange(t, hb, func(tx *doc.Tx) error { return tx.Set(doc.Path{"offline"}, "b's") })
	connect(t, a, b)
	eventually(t, wait, "a and b at the same heads", func() bool {
		return len(ha.Heads()) == 2 && hb.Heads().Equal(ha.Heads())
	})
	eventually(t, wait, "the link is quiet", func() bool { return quiet(a, b) })
	for _, h := range []*doc.Handle{ha, hb} {
		v := value(t, h)
		if v["offline"] != "b's" || v["n"] != value(t, ha)["n"] || v["n"] == int64(-1) {
			t.Fatalf("%v lost a change: %v", h, v)
		}
	}
	if n := a.svc.Stats().BehindSnapshots; n != 0 {
		t.Fatalf("a sent %d snapshots to a diverged peer, want the plain sync", n)
	}
}

// A hostile peer that says Hello with a new session and advertises an old
// prefix of a large document, over and over, gets at most
// maxBehindSnapshots snapshots of it on the connection: after that it gets
// the plain sync, whose first message carries no changes. Without the
// bound each fresh Hello made us Save() and send the whole document again.
func TestHostileBehindHavesGetBoundedSnapshots(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a := newNode(t, mn, Config{})
	ha, prefix := longDoc(t, a, "long")
	save := len(ha.Save())
	old, err := doc.Open(context.Background(), "old", doc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close(context.Background())
	if err := old.LoadIncremental(doc.Origin{}, prefix); err != nil {
		t.Fatal(err)
	}
	bad, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[FrameType]int{}
	bytes := 0
	bad.SetStreamHandler(protocol.ID(ProtocolID), func(s network.Stream) {
		r := bufio.NewReader(s)
		for {
			f, n, err := ReadFrame(r, 0)
			if err != nil {
				_ = s.Reset()
				return
			}
			mu.Lock()
			got[f.Type]++
			bytes += n
			mu.Unlock()
		}
	})
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bad.Connect(ctx, peer.AddrInfo{ID: a.h.ID(), Addrs: a.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	s, err := bad.NewStream(ctx, a.h.ID(), protocol.ID(ProtocolID))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	const rounds = 10 * maxBehindSnapshots
	for i := range rounds {
		for _, f := range []Frame{
			{Type: Hello, Version: Version, Session: uint64(1000 + i)},
			{Type: Have, Digest: DocDigest(bad.ID(), "long"), Heads: old.Heads()},
		} {
			b, err := AppendFrame(nil, f, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Write(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, wait, "a read every have", func() bool { return a.svc.Stats().FramesIn[Have] >= rounds })
	eventually(t, wait, "a is idle", func() bool {
		mu.Lock()
		n := bytes
		mu.Unlock()
		return a.svc.idle() && uint64(n) == a.svc.Stats().BytesOut
	})
	mu.Lock()
	defer mu.Unlock()
	t.Logf("Save() %d B; the hostile peer received %d B in frames %v for %d fresh Hello+Have rounds", save, bytes, got, rounds)
	if got[Snapshot] > maxBehindSnapshots {
		t.Fatalf("%d snapshots sent, want at most %d", got[Snapshot], maxBehindSnapshots)
	}
	if got[Snapshot] == 0 {
		t.Fatal("no snapshot sent: a behind peer should get one")
	}
}

// A peer the Allow policy denies a document is not told we hold it: no
// Have (its digest and heads) goes to it, though Share allows every peer.
func TestDeniedPeerGetsNoHave(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	var bID peer.ID
	a := newNode(t, mn, Config{Allow: func(p peer.ID, _ string) Access {
		if p == bID {
			return Deny
		}
		return ReadWrite
	}})
	b := newNode(t, mn, Config{})
	bID = b.h.ID()
	ha := a.open(t, "secret")
	mustChange(t, ha, func(tx *doc.Tx) error { return tx.Set(doc.Path{"k"}, "v") })
	connect(t, a, b)
	eventually(t, wait, "b heard a's hello", func() bool { return b.svc.Stats().FramesIn[Hello] >= 1 })
	eventually(t, wait, "the link is quiet", func() bool { return quiet(a, b) })
	if n := b.svc.Stats().FramesIn[Have]; n != 0 {
		t.Fatalf("the denied peer received %d have frames", n)
	}
}
