package repo_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/docsync"
	"github.com/convene-p2p/convene/p2p"
	"github.com/convene-p2p/convene/repo"
)

// A line A—B—C of default Repos where B, the only peer C is connected to,
// does not hold the document: C has no session with anyone who has A's
// change, so sync alone never brings it. A's announcement, relayed by B,
// tells C that its copy is behind; C dials A (whose address it kept from
// an earlier connection) and the new session syncs. With announcements off
// (Config.DisableAnnouncements, or before they were on in a default Repo)
// C never gets the change: checked by running this test with them off.
func TestAnnouncementBringsAChangeAcrossAPeerWithoutTheDoc(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*syncWait)
	defer cancel()
	a := newRepo(t, nil)
	b := newRepo(t, nil)
	c := newRepo(t, nil)

	ha, err := a.DocWith(ctx, "notes", linesInit)
	if err != nil {
		t.Fatal(err)
	}
	appendLine(t, ha, "first")
	// C fetches the document from A, then loses the connection.
	link(t, c, a)
	hc, err := c.FindDoc(ctx, "notes")
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, syncWait, "C has A's document", func() bool { return hc.Heads().Equal(ha.Heads()) })
	unlink(t, c, a)
	if len(c.Host().Peerstore().Addrs(a.ID())) == 0 {
		t.Fatal("C forgot A's addresses: the dial this test relies on has nothing to dial")
	}
	link(t, a, b)
	link(t, b, c)

	// A changes the document until C is connected to it again: the
	// announcement topic's mesh (A—B—C) forms within a heartbeat or two
	// of the links, and an announcement published before A knows B's
	// subscription reaches no one.
	for i := 0; c.Host().Network().Connectedness(a.ID()) != network.Connected; i++ {
		if i == 20 {
			t.Fatalf("C never dialled A after %d announced changes (C: %+v)", i, c.SyncStats())
		}
		appendLine(t, ha, "more")
		// grace (1 s) + recheck tick + a dial; the loop condition decides
		holdsWithin(2*time.Second, func() bool { return c.Host().Network().Connectedness(a.ID()) == network.Connected })
	}
	waitUntil(t, syncWait, "C has A's changes", func() bool { return hc.Heads().Equal(ha.Heads()) })
	if got := c.SyncStats().AnnounceDials; got == 0 {
		t.Errorf("C connected to A, but not by an announcement's dial (AnnounceDials 0)")
	}
	if b.HasDoc("notes") {
		t.Error("B holds the document: the line does not test what it says")
	}
	if n := b.SyncStats().AnnouncementsIn; n == 0 {
		t.Error("B never received an announcement (it relays them)")
	}
}

// Two connected default Repos whose session has no pair for a document
// both hold: C refused it to A (its Allow policy said Deny when A offered
// it) and has allowed it since. Nothing on the session brings A's next
// change to C: A's offer was answered Unavailable, so A stopped syncing the
// document with C, and C does not offer what it has. A's announcement does:
// C still lacks the heads after the grace and nudges its session with A,
// whose fresh pair syncs. (Before announcements were on in a default Repo,
// or with them off, C stays behind until the peers reconnect: checked by
// running this test with them off.)
func TestAnnouncementNudgesASessionWithNoPairForTheDoc(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*syncWait)
	defer cancel()
	var allow atomic.Bool
	a := newRepo(t, nil)
	c := newRepo(t, func(cfg *repo.Config) {
		cfg.DocSync.Allow = func(peer.ID, string) docsync.Access {
			if allow.Load() {
				return docsync.ReadWrite
			}
			return docsync.Deny
		}
	})
	ha, err := a.DocWith(ctx, "ledger", linesInit)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := c.DocWith(ctx, "ledger", linesInit)
	if err != nil {
		t.Fatal(err)
	}
	link(t, a, c)
	waitUntil(t, syncWait, "C refuses A's offer", func() bool { return c.SyncStats().Refused > 0 })
	allow.Store(true)

	// Same genesis (linesInit): equal heads until A changes.
	for i := 0; i == 0 || !hc.Heads().Equal(ha.Heads()); i++ {
		if i == 20 {
			t.Fatalf("C still behind after %d announced changes (C: %+v)", i, c.SyncStats())
		}
		appendLine(t, ha, "entry")
		// grace (1 s) + recheck tick + a sync; the loop condition decides
		holdsWithin(2*time.Second, func() bool { return hc.Heads().Equal(ha.Heads()) })
	}
	if n := c.SyncStats().AnnounceNudges; n == 0 {
		t.Error("C caught up, but no announcement nudged its session")
	}
}

// plainNode is a libp2p host running a GossipSub of its own (pubsub's
// defaults plus flood publishing), joined to the announce topic of the
// default namespace: a hostile peer or an eavesdropper, not a Repo.
type plainNode struct {
	h     *p2p.Host
	ps    *pubsub.PubSub
	topic *pubsub.Topic
	sub   *pubsub.Subscription
}

func newPlainNode(t *testing.T) *plainNode {
	t.Helper()
	h, err := p2p.New(context.Background(), p2p.LocalConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// A deep outbound queue, so a flood leaves this node whole.
	ps, err := pubsub.NewGossipSub(ctx, h.Host(), pubsub.WithFloodPublish(true), pubsub.WithPeerOutboundQueueSize(4096))
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join(docsync.AnnounceTopic(""))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := topic.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sub.Cancel()
		_ = topic.Close()
		cancel()
		_ = h.Close()
	})
	return &plainNode{h: h, ps: ps, topic: topic, sub: sub}
}

// connect dials r and waits until r's router has admitted this node's
// subscription to the announce topic and told it its own (so a publish
// here reaches r): the router Convene starts admits that topic.
func (n *plainNode) connect(t *testing.T, r *repo.Repo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), syncWait)
	defer cancel()
	if err := n.h.Host().Connect(ctx, peer.AddrInfo{ID: r.ID(), Addrs: r.Host().Addrs()}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, syncWait, "the Repo on the plain node's announce topic", func() bool {
		return slices.Contains(n.topic.ListPeers(), r.ID())
	})
}

// A plain GossipSub peer X publishes on the announce topic of a default
// Repo R: malformed and oversized announcements are rejected by R's
// validator (counted, never forwarded to R's honest peer C), a flood of
// well-formed ones is cut by R's pre-check (counted) and costs X its score,
// nothing crashes, and R and C keep syncing and announcing.
func TestHostileAnnouncementsAreDroppedAndCounted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*syncWait)
	defer cancel()
	r := newRepo(t, nil)
	c := newRepo(t, nil)
	hr, err := r.DocWith(ctx, "shared", linesInit)
	if err != nil {
		t.Fatal(err)
	}
	link(t, r, c)
	hc, err := c.FindDoc(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	// Two hostile peers: X sends bad announcements, Y floods. (Three
	// rejected messages graylist X at R, which then drops its RPCs
	// unread: a flood from X would not reach R's pre-check.)
	x, y := newPlainNode(t), newPlainNode(t)
	x.connect(t, r)
	y.connect(t, r)

	publish := func(n *plainNode, b []byte) {
		t.Helper()
		if err := n.topic.Publish(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	publish(x, []byte{9, 9, 9})               // unknown version
	publish(x, append([]byte{1}, 0xff, 0xff)) // truncated
	publish(x, bytes.Repeat([]byte{1}, 40<<10))
	waitUntil(t, syncWait, "R rejects the three bad announcements", func() bool {
		return r.SyncStats().BadAnnouncements >= 3
	})

	// A flood of well-formed announcements of documents nobody has.
	const flood = 1000
	pre := r.Stats().PreLimited
	for range flood {
		var d docsync.Digest
		var one doc.Hash
		_, _ = rand.Read(d[:])
		_, _ = rand.Read(one[:])
		b, err := docsync.EncodeAnnouncement(docsync.Announcement{Digest: d, Heads: doc.Heads{one}})
		if err != nil {
			t.Fatal(err)
		}
		publish(y, b)
	}
	waitUntil(t, syncWait, "R's pre-check drops part of the flood", func() bool {
		return r.Stats().PreLimited > pre
	})
	waitUntil(t, syncWait, "X's and Y's scores at R negative", func() bool {
		s := r.PeerScores()
		return s[x.h.ID()] < 0 && s[y.h.ID()] < 0
	})
	if in := r.SyncStats().AnnouncementsIn; in >= flood {
		t.Errorf("R's docsync read %d announcements of a flood of %d: nothing was cut", in, flood)
	}
	if bad := c.SyncStats().BadAnnouncements; bad != 0 {
		t.Errorf("C saw %d bad announcements: R forwarded what it rejected", bad)
	}

	// R and C keep working: a change syncs, and its announcement arrives.
	before := c.SyncStats().AnnouncementsIn
	appendLine(t, hr, "after the attack")
	waitUntil(t, syncWait, "C has R's change", func() bool { return hc.Heads().Equal(hr.Heads()) })
	waitUntil(t, syncWait, "C gets R's announcement", func() bool { return c.SyncStats().AnnouncementsIn > before })
}

// frameLog records the docsync frames a plain node receives.
type frameLog struct {
	mu     sync.Mutex
	frames []docsync.Frame
}

func (l *frameLog) handle(st network.Stream) {
	r := bufio.NewReader(st)
	for {
		f, _, err := docsync.ReadFrame(r, docsync.DefaultMaxFrame)
		if err != nil {
			_ = st.Reset()
			return
		}
		l.mu.Lock()
		l.frames = append(l.frames, f)
		l.mu.Unlock()
	}
}

func (l *frameLog) find(match func(docsync.Frame) bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.frames, match)
}

// Announcements never carry the document ID, and what they carry does not
// fetch the document: an eavesdropper E on the announce topic of a default
// Repo R records every announcement of a document it does not know (the
// whole signed pubsub message: no ID in it; the digest is AnnounceDigest,
// not a DocDigest a session's Have names), then asks R for the announced
// digest over docsync and is told Unavailable. The control: the same ask
// naming DocDigest(E, id) is answered with the snapshot, so the refusal
// comes from the digest, not from E.
func TestAnnouncementsCarryNoIDAndFetchNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*syncWait)
	defer cancel()
	e := newPlainNode(t)
	var got frameLog
	e.h.Host().SetStreamHandler(protocol.ID(docsync.ProtocolID), got.handle)
	// E gets no Have on its docsync session (a peer R's Share policy
	// allows gets one unprompted, with DocDigest(R, id): PROTOCOL.md part 4,
	// Access), so all E learns unprompted comes from the topic.
	r := newRepo(t, func(cfg *repo.Config) {
		cfg.DocSync.Share = func(p peer.ID, _ string) bool { return p != e.h.ID() }
	})
	e.connect(t, r)

	const id = "a-secret-document-id-4f1c9b"
	h, err := r.DocWith(ctx, id, linesInit)
	if err != nil {
		t.Fatal(err)
	}
	var raw [][]byte
	var ann docsync.Announcement
	for i := 0; len(raw) < 3; i++ {
		if i == 50 {
			t.Fatalf("E received %d announcements after %d changes", len(raw), i)
		}
		appendLine(t, h, "a line")
		mctx, mcancel := context.WithTimeout(ctx, time.Second)
		m, err := e.sub.Next(mctx)
		mcancel()
		if err != nil {
			continue // published before the topic reached E; change again
		}
		if m.GetFrom() != r.ID() {
			continue
		}
		whole, err := proto.Marshal(m.Message)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, whole)
		if ann, err = docsync.DecodeAnnouncement(m.Data); err != nil {
			t.Fatalf("announcement %x: %v", m.Data, err)
		}
	}
	// What R names the document by in its Haves, and what E names it by
	// once it knows the ID: neither is in an announcement.
	rd, did := docsync.DocDigest(r.ID(), id), docsync.DocDigest(e.h.ID(), id)
	for _, b := range raw {
		if bytes.Contains(b, []byte(id)) {
			t.Fatalf("an announcement carries the document ID: %x", b)
		}
		if bytes.Contains(b, did[:]) || bytes.Contains(b, rd[:]) {
			t.Fatalf("an announcement carries a DocDigest of the document: %x", b)
		}
	}
	if ann.Digest != docsync.AnnounceDigest(id) {
		t.Fatalf("announced digest %s, want AnnounceDigest(id) %s", ann.Digest, docsync.AnnounceDigest(id))
	}

	s := openRawSession(t, ctx, e, r)
	carries := func(f docsync.Frame) bool { return f.Doc != "" || f.Type == docsync.Have }
	s.ask(ann.Digest)
	waitUntil(t, syncWait, "R answers the announced digest Unavailable", func() bool {
		return got.find(func(f docsync.Frame) bool { return f.Type == docsync.Unavailable && f.Digest == ann.Digest })
	})
	if got.find(carries) {
		t.Fatalf("E received a frame naming or offering a document before it named one: %+v", got.frames)
	}
	s.ask(did)
	defer func() {
		if t.Failed() {
			got.mu.Lock()
			for _, f := range got.frames {
				t.Logf("E got %v doc=%q digest=%s", f.Type, f.Doc, f.Digest)
			}
			got.mu.Unlock()
			t.Logf("R: %+v", r.SyncStats())
		}
	}()
	waitUntil(t, syncWait, "R answers DocDigest(E, id) with the snapshot (the control)", func() bool {
		return got.find(func(f docsync.Frame) bool { return f.Type == docsync.Snapshot && f.Doc == id })
	})
}
