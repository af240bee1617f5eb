package docsync

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/convene-p2p/convene/doc"
)

// A new peer fetching a 1000-change document gets it as a snapshot plus
// one sync exchange: the bytes it receives stay within 2× Save() (the
// naive first sync of automerge 0.5.0 sends about 55×), and the holder
// sends exactly one snapshot and one sync message for it, however the
// new peer's Request and the snapshot cross on the wire.
func TestNewPeerFetchIsSnapshotFirst(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a, b := newNode(t, mn, Config{}), newNode(t, mn, Config{})
	ha := a.open(t, "long")
	for i := range 1000 {
		mustChange(t, ha, func(tx *doc.Tx) error { return tx.Set(doc.Path{"n"}, i) })
	}
	save := len(ha.Save())
	hb := b.open(t, "long")
	connect(t, a, b)
	eventually(t, wait, "b has a's heads", func() bool { return hb.Heads().Equal(ha.Heads()) })
	// Then wait until the exchange is over: no frame in flight either
	// way, nothing queued or dirty, no reader or writer at work. Whatever
	// a sends after a reset (the extra message of issue 11) is counted.
	eventually(t, wait, "the link is quiet", func() bool { return quiet(a, b) })
	st := b.svc.Stats()
	t.Logf("Save() %d B; b received %d B (%.2f× Save()) in frames %v", save, st.BytesIn, float64(st.BytesIn)/float64(save), st.FramesIn)
	if st.FramesIn[Snapshot] != 1 {
		t.Fatalf("%d snapshots, want 1", st.FramesIn[Snapshot])
	}
	if st.FramesIn[Sync] != 1 {
		t.Fatalf("b received %d sync messages, want 1 (a's first, answered by b)", st.FramesIn[Sync])
	}
	if st.BytesIn > uint64(2*save) {
		t.Fatalf("b received %d bytes, over 2× Save() = %d", st.BytesIn, 2*save)
	}
}

// quiet reports whether every frame a and b sent has been read and
// dispatched, and neither has anything queued, dirty or being sent.
func quiet(a, b *node) bool {
	for _, n := range []*node{a, b} {
		if !n.svc.idle() {
			return false
		}
	}
	sa, sb := a.svc.Stats(), b.svc.Stats()
	return sa.BytesOut == sb.BytesIn && sb.BytesOut == sa.BytesIn && a.svc.idle() && b.svc.idle()
}

// idle reports whether no session of s has work pending or under way.
func (s *Service) idle() bool {
	s.mu.Lock()
	cs := s.connsLocked()
	s.mu.Unlock()
	for _, c := range cs {
		c.mu.Lock()
		pending := len(c.dirty) + len(c.ctrl)
		c.mu.Unlock()
		if pending > 0 || c.busy.Load() != 0 {
			return false
		}
	}
	return true
}

// inSync reports whether the service's sync state of id with p has heard
// the peer at our heads.
func (s *Service) inSync(p peer.ID, id string) bool {
	s.mu.Lock()
	c := s.peers[p]
	s.mu.Unlock()
	if c == nil {
		return false
	}
	c.mu.Lock()
	pr := c.pairs[id]
	c.mu.Unlock()
	return pr != nil && pr.ss.InSync()
}
