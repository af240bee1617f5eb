package docsync

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/automerge/automerge-go"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	msmux "github.com/multiformats/go-multistream"

	"github.com/convene-p2p/convene/doc"
)

// conn is the session with one peer: our outbound stream (written by one
// goroutine, write), the peer's inbound stream (read by one goroutine,
// read) and the sync state of every document synced with the peer.
// Sync messages are never queued: a document with something to say is
// marked dirty and its message generated when the stream can take it, so
// a slow peer holds no buffer and never blocks a handle's lock.
type conn struct {
	s       *Service
	peer    peer.ID
	session uint64
	ctx     context.Context
	cancel  context.CancelFunc
	wake    chan struct{} // cap 1
	busy    atomic.Int32  // a frame being dispatched or a step at work (for tests' quiescence)

	mu        sync.Mutex
	out, in   network.Stream
	opened    bool   // out is open and our Hello written
	their     uint64 // the peer's session
	heard     bool   // their is set
	pairs     map[string]*pair
	dirty     []string
	isDirty   map[string]bool
	ctrl      []Frame
	ctrlBytes int
	wants     map[string]bool // asked for by the peer while we had nothing
	// emptyHaves counts our Haves with no heads the peer has not answered
	// with Unavailable or data yet (see answeredEmptyHave).
	emptyHaves map[string]int
	closed     bool

	// behindN counts the snapshots sent to the peer while it was
	// behind, per document, over the whole connection (a fresh Hello does
	// not clear it): a peer cannot trigger more than maxBehindSnapshots.
	behindN map[string]int

	// theirs maps DocDigest(peer, id) to id for the tracked documents,
	// built on the peer's first Have; guarded by s.mu (resolveTheirs).
	theirs map[Digest]string
}

// pair is one document synced with the peer.
type pair struct {
	h        *doc.Handle
	ss       *doc.SyncState
	access   Access
	snapshot bool      // send a Snapshot before the next sync message
	snapSent bool      // one was sent (or is being sent) on this session; guarded by c.mu
	lastIO   time.Time // last frame sent or received for it

	// stale counts the peer's sync messages still to drop as written
	// before it had the snapshot we sent to it while it was behind (see
	// receive); guarded by c.mu.
	stale int
	// behind: the snapshot asked for is for a peer behind, not empty
	// (counted against maxBehindSnapshots when sent); guarded by c.mu.
	behind bool
}

func newConn(s *Service, p peer.ID) *conn {
	ctx, cancel := context.WithCancel(s.ctx)
	return &conn{
		s: s, peer: p, session: newSession(), ctx: ctx, cancel: cancel,
		wake:       make(chan struct{}, 1),
		pairs:      make(map[string]*pair),
		isDirty:    make(map[string]bool),
		wants:      make(map[string]bool),
		emptyHaves: make(map[string]int),
		behindN:    make(map[string]int),
	}
}

func (c *conn) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *conn) ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opened && !c.closed
}

// close ends the session (both streams). Idempotent.
func (c *conn) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.cancel() // with closed, so ctx tells a closed session without c.mu
	out, in := c.out, c.in
	c.pairs = map[string]*pair{}
	c.mu.Unlock()
	if out != nil {
		_ = out.Reset()
	}
	if in != nil {
		_ = in.Reset()
	}
}

// fail ends the session after an error and lets the service retry.
func (c *conn) fail(retry bool) {
	c.close()
	c.s.ended(c, retry)
}

// queue adds a control frame; beyond MaxQueuedBytes it is dropped.
func (c *conn) queue(f Frame) {
	c.mu.Lock()
	ok := c.queueLocked(f)
	c.mu.Unlock()
	if ok {
		c.poke()
	}
}

// queueLocked is queue with c.mu held (the caller pokes); it reports
// whether the frame was queued.
func (c *conn) queueLocked(f Frame) bool {
	n := 64 + len(f.Doc) + 32*len(f.Heads)
	if c.closed || c.ctrlBytes+n > c.s.cfg.MaxQueuedBytes {
		c.s.stats.add(&c.s.stats.dropped, 1)
		return false
	}
	c.ctrl = append(c.ctrl, f)
	c.ctrlBytes += n
	return true
}

// markLocked marks id dirty; c.mu is held.
func (c *conn) markLocked(id string) {
	if !c.isDirty[id] {
		c.isDirty[id] = true
		c.dirty = append(c.dirty, id)
	}
}

// pairFor returns id's pair, made if the policy and the limit allow.
func (c *conn) pairFor(id string, h *doc.Handle) (*pair, bool) {
	return c.pairWith(id, h, nil)
}

// pairWith is pairFor running set (if not nil) on the pair under the same
// hold of c.mu that found or made it, so no step sees the pair before set
// ran (a step that did sent a sync message before the snapshot a Have
// asked for).
func (c *conn) pairWith(id string, h *doc.Handle, set func(*pair)) (*pair, bool) {
	c.mu.Lock()
	p := c.pairs[id]
	n := len(c.pairs)
	if p != nil && set != nil {
		set(p)
	}
	c.mu.Unlock()
	if p != nil {
		return p, true
	}
	acc := c.s.cfg.Allow(c.peer, id)
	if acc == Deny || n >= c.s.cfg.MaxDocsPerPeer {
		c.s.stats.add(&c.s.stats.refused, 1)
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false
	}
	if p = c.pairs[id]; p == nil {
		p = &pair{h: h, ss: h.NewSyncState(origin(c.peer)), access: acc}
		c.pairs[id] = p
	}
	if set != nil {
		set(p)
	}
	return p, true
}

// offer tells the peer we hold id (a Have), if the policy allows: Share,
// and Allow not Deny (a denied peer is not told we hold it, issue 11).
func (c *conn) offer(id string, t *tracked) {
	if !c.ready() || !c.s.cfg.Share(c.peer, id) || c.s.cfg.Allow(c.peer, id) == Deny {
		return
	}
	heads := t.h.Heads()
	if len(heads) > MaxHeads {
		heads = heads[:MaxHeads]
	}
	c.mu.Lock()
	ok := c.queueLocked(Frame{Type: Have, Digest: t.digest, Heads: heads})
	if ok && len(heads) == 0 {
		c.emptyHaves[id]++
	}
	c.mu.Unlock()
	if !ok {
		return
	}
	c.poke()
	if len(heads) == 0 {
		c.s.askedPeer(c.peer, id)
	}
}

// changed marks id dirty after a change here.
func (c *conn) changed(id string) {
	c.mu.Lock()
	p, want := c.pairs[id], c.wants[id]
	c.mu.Unlock()
	if p == nil && !want {
		return
	}
	if p == nil {
		t := c.s.trackedDoc(id)
		if t == nil {
			return
		}
		var ok bool
		if p, ok = c.pairFor(id, t.h); !ok {
			return
		}
		p.snapshot = true
	}
	c.mu.Lock()
	delete(c.wants, id)
	c.markLocked(id)
	c.mu.Unlock()
	c.poke()
}

// nudge restarts id's sync with the peer (an announcement showed heads we
// lack).
func (c *conn) nudge(id string, t *tracked) {
	p, ok := c.pairFor(id, t.h)
	if !ok {
		return
	}
	p.ss.Reset()
	c.mu.Lock()
	c.markLocked(id)
	c.mu.Unlock()
	c.poke()
}

// answeredEmptyHave reports whether an Unavailable for id answers a Have
// of ours with no heads (and counts it answered). That answer only says
// "nor do I": it was written before the peer saw anything we sent since,
// so it must not end the pair or the want the peer's own Have made. It
// did, and the first change made after two empty peers met was never sent
// when the answer arrived after the change (issue 11). Any other
// Unavailable refuses the document: the pair and the want end.
func (c *conn) answeredEmptyHave(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.emptyHaves[id] == 0 {
		return false
	}
	c.emptyHaves[id]--
	if c.emptyHaves[id] == 0 {
		delete(c.emptyHaves, id)
	}
	return true
}

// drop forgets id's pair and want and reports whether there was a pair.
func (c *conn) drop(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.pairs[id]
	delete(c.pairs, id)
	delete(c.wants, id)
	return ok
}

// write opens the stream, says Hello, offers every tracked document and
// then sends what is queued or dirty until the session ends.
func (c *conn) write() {
	s := c.s
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	st, err := s.host.NewStream(network.WithAllowLimitedConn(ctx, ProtocolID), c.peer, protocol.ID(ProtocolID))
	cancel()
	if err != nil {
		var notSupported msmux.ErrNotSupported[protocol.ID]
		c.fail(!errors.As(err, &notSupported) && !errors.Is(err, context.Canceled))
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = st.Reset()
		return
	}
	c.out = st
	c.mu.Unlock()
	if err := c.send(Frame{Type: Hello, Version: Version, Session: c.session}); err != nil {
		c.fail(true)
		return
	}
	s.stats.add(&s.stats.sessions, 1)
	c.mu.Lock()
	c.opened = true
	c.mu.Unlock()
	c.offerAll()

	var tick <-chan time.Time
	if s.cfg.StallCheck > 0 {
		t := time.NewTicker(s.cfg.StallCheck / 2)
		defer t.Stop()
		tick = t.C
	}
	for {
		worked, err := c.step()
		if err != nil {
			c.fail(true)
			return
		}
		if worked {
			continue
		}
		select {
		case <-c.ctx.Done():
			_ = st.Close()
			return
		case <-c.wake:
		case <-tick:
			c.checkStalls()
		}
	}
}

// offerAll sends a Have for every tracked document.
func (c *conn) offerAll() {
	c.s.mu.Lock()
	ts := make(map[string]*tracked, len(c.s.tracked))
	for id, t := range c.s.tracked {
		ts[id] = t
	}
	c.s.mu.Unlock()
	for id, t := range ts {
		c.offer(id, t)
	}
}

// step sends one queued control frame or one dirty document's frames; it
// reports whether there was anything to do.
func (c *conn) step() (bool, error) {
	c.busy.Add(1)
	defer c.busy.Add(-1)
	c.mu.Lock()
	if len(c.ctrl) > 0 {
		f := c.ctrl[0]
		c.ctrl[0] = Frame{}
		c.ctrl = c.ctrl[1:]
		c.ctrlBytes -= 64 + len(f.Doc) + 32*len(f.Heads)
		c.mu.Unlock()
		return true, c.send(f)
	}
	if len(c.dirty) == 0 {
		c.mu.Unlock()
		return false, nil
	}
	id := c.dirty[0]
	c.dirty = c.dirty[1:]
	delete(c.isDirty, id)
	p := c.pairs[id]
	var snap bool
	if p != nil {
		// Decided under c.mu: receive drops a Request that crossed a
		// snapshot already committed to (see receive).
		snap = p.snapshot && !p.snapSent
		if snap && p.behind {
			// Counted when sent, so Haves superseded by a fresh Hello
			// before any snapshot went out do not use the bound up.
			if c.behindN[id] >= maxBehindSnapshots {
				snap = false
			} else {
				c.behindN[id]++
				p.stale = maxStale
				c.s.stats.add(&c.s.stats.behindSnapshots, 1)
			}
		}
		p.snapshot, p.behind = false, false
		p.snapSent = p.snapSent || snap
		p.lastIO = time.Now()
	}
	c.mu.Unlock()
	if p == nil {
		return true, nil
	}
	if snap && p.h.Empty() {
		c.mu.Lock()
		p.snapSent = false // nothing to send yet
		c.mu.Unlock()
		snap = false
	}
	if snap {
		if err := c.send(Frame{Type: Snapshot, Doc: id, Data: p.h.Save()}); err != nil {
			return true, err
		}
		// What the empty peer asked for is in the snapshot: start afresh,
		// or the state would answer its request with every change.
		p.ss.Reset()
	}
	msg, ok, err := p.ss.Generate()
	if err != nil || !ok {
		return true, nil // closed handle, or nothing to say
	}
	t := Sync
	if p.h.Empty() {
		t = Request
	}
	return true, c.send(Frame{Type: t, Doc: id, Data: msg})
}

// send writes one frame on the outbound stream.
func (c *conn) send(f Frame) error {
	c.mu.Lock()
	st := c.out
	c.mu.Unlock()
	b, err := AppendFrame(nil, f, c.s.cfg.MaxFrame)
	if err != nil {
		// Ours too large (a document over MaxFrame): not sent.
		c.s.cfg.Logger.Debug("frame not sent", "peer", c.peer, "type", f.Type, "doc", f.Doc, "err", err)
		return nil
	}
	if _, err := st.Write(b); err != nil {
		return err
	}
	c.s.stats.out(f.Type, len(b))
	return nil
}

// checkStalls runs the idle stall check on every pair quiet for
// StallCheck.
func (c *conn) checkStalls() {
	cut := time.Now().Add(-c.s.cfg.StallCheck)
	c.mu.Lock()
	var quiet []string
	var ps []*pair
	for id, p := range c.pairs {
		if p.lastIO.Before(cut) {
			quiet = append(quiet, id)
			ps = append(ps, p)
		}
	}
	c.mu.Unlock()
	for i, p := range ps {
		reset, err := p.ss.CheckStall()
		if err != nil || !reset {
			continue
		}
		c.s.stats.add(&c.s.stats.stallResets, 1)
		c.mu.Lock()
		p.lastIO = time.Now()
		c.markLocked(quiet[i])
		c.mu.Unlock()
	}
	if len(ps) > 0 {
		c.poke()
	}
}

// read serves the peer's inbound stream until it ends.
func (c *conn) read(st network.Stream) {
	s := c.s
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = st.Reset()
		return
	}
	old := c.in
	c.in = st
	c.mu.Unlock()
	if old != nil {
		_ = old.Reset() // one reader per peer: the newest stream wins
	}
	first := true
	err := readFrames(st, s.cfg.MaxFrame, func(f Frame, n int) error {
		c.busy.Add(1)
		defer c.busy.Add(-1)
		s.stats.in(f.Type, n)
		if first {
			first = false
			if f.Type != Hello || f.Version != Version {
				return ErrMalformed
			}
		}
		return c.dispatch(f)
	})
	if err != nil {
		if errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge) {
			s.stats.add(&s.stats.badFrames, 1)
			c.s.cfg.Logger.Debug("bad frame: session reset", "peer", c.peer, "err", err)
			c.fail(true)
		}
		_ = st.Reset()
		return
	}
	_ = st.Close()
}

// dispatch handles one frame from the peer.
func (c *conn) dispatch(f Frame) error {
	s := c.s
	switch f.Type {
	case Hello:
		c.mu.Lock()
		fresh := c.heard && c.their != f.Session
		c.their, c.heard = f.Session, true
		if fresh {
			// A new session of the peer: every state starts afresh.
			clear(c.pairs)
			clear(c.wants)
			clear(c.emptyHaves)
			c.dirty, c.isDirty = nil, map[string]bool{}
		}
		c.mu.Unlock()
		if fresh {
			c.offerAll()
		}
	case Have:
		id, ok := c.resolveTheirs(f.Digest)
		if !ok {
			c.unavailable(f.Digest)
			return nil
		}
		h, _, err := s.lookup(id)
		if err != nil || h == nil {
			c.unavailable(f.Digest)
			return nil
		}
		if h.Empty() && len(f.Heads) == 0 {
			// Neither has anything: say so, and send it when we do.
			c.mu.Lock()
			c.wants[id] = true
			c.mu.Unlock()
			c.unavailable(f.Digest)
			return nil
		}
		behind := len(f.Heads) > 0 && c.behind(id, h, f.Heads)
		_, ok = c.pairWith(id, h, func(p *pair) {
			if len(f.Heads) == 0 {
				p.snapshot = true
			}
			if behind && !p.snapSent {
				p.snapshot, p.behind = true, true
			}
			c.markLocked(id)
		})
		if !ok {
			c.unavailable(f.Digest)
			return nil
		}
		c.poke()
	case Request, Sync, Snapshot:
		h, deleted, err := s.lookup(f.Doc)
		if deleted {
			c.queue(Frame{Type: Delete, Doc: f.Doc})
			return nil
		}
		if err != nil || h == nil {
			c.unavailable(DocDigest(c.peer, f.Doc))
			return nil
		}
		p, ok := c.pairFor(f.Doc, h)
		if !ok {
			c.unavailable(DocDigest(c.peer, f.Doc))
			return nil
		}
		c.receive(f, p)
	case Unavailable, Delete:
		id, ok := f.Doc, f.Type == Delete
		if !ok {
			id, ok = s.resolve(f.Digest)
		}
		if ok {
			if f.Type == Delete || !c.answeredEmptyHave(id) {
				c.drop(id)
			}
			if f.Type == Unavailable {
				s.stats.add(&s.stats.unavailableIn, 1)
			}
			s.unavailable(c.peer, id)
		}
	}
	return nil
}

// receive applies a Request, Sync or Snapshot for pair p.
func (c *conn) receive(f Frame, p *pair) {
	s := c.s
	c.mu.Lock()
	delete(c.emptyHaves, f.Doc) // the peer answered with data
	c.mu.Unlock()
	var err error
	switch {
	case f.Type == Snapshot && p.access != ReadWrite:
		err = errRefused
	case f.Type == Snapshot:
		err = p.h.LoadIncremental(doc.Origin{Peer: origin(c.peer)}, f.Data)
	case f.Type == Request && !p.h.Empty():
		// The peer has nothing: it gets a snapshot (once per session) and
		// a fresh state's message, not an answer to its request (which
		// would be every change: the 55× first sync of automerge 0.5.0).
		// The state is reset by step, after the snapshot. A Request that
		// arrives once the snapshot is committed to was written before
		// the peer had it: the snapshot and the fresh message after it
		// already answer it, so it is dropped. Resetting here (as before)
		// made the state forget that message and send a second one, with
		// its Bloom filter over every change (issue 11).
		c.mu.Lock()
		if !p.snapSent {
			p.snapshot = true
			c.markLocked(f.Doc)
		}
		p.lastIO = time.Now()
		c.mu.Unlock()
		c.poke()
		return
	case f.Type == Sync && c.staleSync(f, p):
		// Written before the peer had the snapshot we sent it because it
		// was behind: answering it would send every change after its old
		// heads (the plain first sync the snapshot replaces). The
		// snapshot and our fresh message after it answer it.
		c.s.stats.add(&c.s.stats.staleSyncs, 1)
		return
	case p.access != ReadWrite:
		err = p.ss.ReceiveWithoutChanges(f.Data)
	default:
		err = p.ss.Receive(f.Data)
	}
	switch {
	case errors.Is(err, errRefused), errors.Is(err, doc.ErrRefused):
		s.stats.add(&s.stats.refused, 1)
	case err != nil:
		s.stats.add(&s.stats.badSync, 1)
		s.cfg.Logger.Debug("sync refused", "peer", c.peer, "doc", f.Doc, "err", err)
	case f.Type != Snapshot:
		s.stats.add(&s.stats.syncs, 1)
	}
	c.mu.Lock()
	p.lastIO = time.Now()
	c.markLocked(f.Doc)
	c.mu.Unlock()
	c.poke()
	s.settle(f.Doc, p.h)
}

var errRefused = errors.New("docsync: refused by policy")

const (
	// SnapshotBehind is how many changes beyond a peer's advertised heads
	// make us send it the snapshot instead of the plain Automerge sync,
	// when every head it advertises is in our document (it is behind, not
	// diverged). Automerge 0.5.0 sends each missing change whole (about
	// 130 B for a small change: 129 KB for 1000 changes, DOCUMENTS.md
	// §1.3), while Save() compresses the whole history (2.3 KB for those
	// 1000) and the fresh message after it carries a Bloom filter of about
	// 1.25 B per change. A few dozen changes already cost more than a
	// small document's snapshot; below this the sync is kept, as it is for
	// a peer only slightly behind a large document.
	SnapshotBehind = 64
	// maxBehindSnapshots bounds the snapshots one connection's peer gets
	// for one document by advertising heads we hold: after that it gets
	// the plain sync, so a hostile peer repeating Hello and Have cannot
	// make us save and send the document over and over.
	maxBehindSnapshots = 2
	// maxStale bounds the peer's sync messages dropped as written before
	// it had our snapshot (normally one: its first message).
	maxStale = 2
)

// behind reports whether a peer advertising heads is behind us by at least
// SnapshotBehind changes on id, with every head of it in our document, and
// may still get a snapshot for it (once per session, maxBehindSnapshots
// per connection).
func (c *conn) behind(id string, h *doc.Handle, heads doc.Heads) bool {
	c.mu.Lock()
	p := c.pairs[id]
	done := p != nil && p.snapSent || c.behindN[id] >= maxBehindSnapshots
	c.mu.Unlock()
	if done || !h.Contains(heads) {
		return false
	}
	since := make([]automerge.ChangeHash, len(heads))
	for i, x := range heads {
		since[i] = automerge.ChangeHash(x)
	}
	n := 0
	_ = h.Read(func(tx *doc.Tx) error {
		chs, err := tx.Automerge().Changes(since...)
		n = len(chs)
		return err
	})
	return n >= SnapshotBehind
}

// syncHeads decodes the sender's heads at the start of an Automerge sync
// message (type byte 0x42, a ULEB128 count, then 32-byte hashes); the
// pinned automerge-go does not export its decoder.
func syncHeads(b []byte) (doc.Heads, error) {
	if len(b) < 2 || b[0] != 0x42 {
		return nil, ErrMalformed
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > MaxHeads || uint64(len(b)-1-k) < n*32 {
		return nil, ErrMalformed
	}
	b = b[1+k:]
	hs := make(doc.Heads, n)
	for i := range hs {
		copy(hs[i][:], b[32*i:])
	}
	return hs, nil
}

// staleSync reports whether f, a sync message from the peer, was written
// before it had the snapshot we sent it while it was behind, and counts it
// dropped. After loading the snapshot the peer has every change we had
// then, so a message whose heads are all ours but not our heads predates
// it. At most maxStale are dropped per snapshot, so a peer whose load
// failed is not ignored for good.
func (c *conn) staleSync(f Frame, p *pair) bool {
	c.mu.Lock()
	if p.stale == 0 || !p.snapSent {
		c.mu.Unlock()
		return false
	}
	c.mu.Unlock()
	their, err := syncHeads(f.Data)
	if err != nil || len(their) == 0 || their.Equal(p.h.Heads()) || !p.h.Contains(their) {
		c.mu.Lock()
		p.stale = 0 // the peer has caught up (or the message is not for us to judge)
		c.mu.Unlock()
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.stale == 0 {
		return false
	}
	p.stale--
	p.lastIO = time.Now()
	return true
}

func (c *conn) unavailable(d Digest) {
	c.s.stats.add(&c.s.stats.unavailableOut, 1)
	c.queue(Frame{Type: Unavailable, Digest: d})
}

// resolve maps a digest as we name documents (DocDigest(self, id): the
// echo in an Unavailable) to a document here: tracked, or known to Docs.
func (s *Service) resolve(d Digest) (string, bool) {
	s.mu.Lock()
	id, ok := s.digests[d]
	s.mu.Unlock()
	if ok {
		return id, true
	}
	return s.docs.Resolve(s.host.ID(), d)
}

// resolveTheirs maps a digest as the peer names documents (DocDigest(peer,
// id): its Have) to a document here. The tracked documents' digests for
// this peer are computed once per connection (under s.mu; Track and
// Untrack keep them current), the stored ones by Docs.
func (c *conn) resolveTheirs(d Digest) (string, bool) {
	s := c.s
	s.mu.Lock()
	if c.theirs == nil {
		c.theirs = make(map[Digest]string, len(s.tracked))
		for id := range s.tracked {
			c.theirs[DocDigest(c.peer, id)] = id
		}
	}
	id, ok := c.theirs[d]
	s.mu.Unlock()
	if ok {
		return id, true
	}
	return s.docs.Resolve(c.peer, d)
}
