package docsync

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	golog "github.com/ipfs/go-log/v2"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multiaddr"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/ephemeral"
)

// Errors of the service.
var (
	ErrClosed = errors.New("docsync: closed")
	// ErrUnavailable: no connected peer had the document (every one asked
	// said so, or the wait timed out).
	ErrUnavailable = errors.New("docsync: document unavailable")
)

// Access is what a peer may do with one document (Config.Allow).
type Access uint8

const (
	// Deny: the document is not synced with the peer at all; it is told
	// Unavailable, exactly as if the document were not here.
	Deny Access = iota
	// ReadOnly: the peer receives the document and its changes; sync
	// messages from it that carry changes this peer lacks are refused
	// (counted in Stats.Refused) and nothing of them is applied.
	ReadOnly
	// ReadWrite: the peer receives the document and its changes are
	// applied (the default).
	ReadWrite
)

// String names the access level.
func (a Access) String() string {
	switch a {
	case Deny:
		return "deny"
	case ReadOnly:
		return "read-only"
	case ReadWrite:
		return "read-write"
	}
	return "unknown"
}

// Docs is what the service needs from the documents' owner (repo.Repo):
// lookups that never create a document.
type Docs interface {
	// Lookup returns the handle of document id if it exists here (open,
	// or in storage: Lookup opens it), else nil. deleted reports a
	// tombstone.
	Lookup(ctx context.Context, id string) (h *doc.Handle, deleted bool, err error)
	// Resolve returns the ID of the document here (open or stored, not
	// deleted) by which peer p names d: DocDigest(p, id) == d.
	Resolve(p peer.ID, d Digest) (id string, ok bool)
}

// Config configures a Service. The zero value (with Host and Docs set by
// New's arguments) is usable: every peer that names a document may read
// and write it, the stall check runs after 2 s of quiet, and there are no
// announcements (a repo.Repo sets PubSub: its documents announce).
type Config struct {
	// Allow decides per (peer, document) what the peer may do. It is asked
	// when the peer first names the document (or matches its digest) on a
	// session. Nil: ReadWrite for every peer (the document ID is the
	// capability: whoever knows it reads and writes).
	Allow func(p peer.ID, id string) Access
	// Share decides whether the service tells peer p about document id
	// unprompted: a Have frame (its digest and heads, never its ID) when p
	// connects and when the document opens here, and the announcements
	// (asked with p empty: an announcement reaches every peer on the
	// topic). Nil: every connected peer (a digest reveals the ID to no one who
	// does not know it already).
	Share func(p peer.ID, id string) bool
	// PubSub, if set, carries head announcements on the topic
	// AnnounceTopic(Namespace) (see Announcements in docs/PROTOCOL.md
	// part 4): an app's *pubsub.PubSub, or the Extra topics of a
	// gossip.Router started with that topic (what a default repo.Repo
	// does). Its subscription filter must admit the topic. Nil: no
	// announcements.
	PubSub    PubSub
	Namespace string
	// MaxFrame bounds a frame's body, in and out. Zero: DefaultMaxFrame.
	MaxFrame int
	// MaxDocsPerPeer bounds the documents in sync with one peer at once
	// (their sync states); a peer naming more is told Unavailable. Zero:
	// 4096.
	MaxDocsPerPeer int
	// MaxQueuedBytes bounds the control frames (have, unavailable, delete)
	// queued for one peer; beyond it they are dropped and counted. Sync
	// messages are never queued: they are generated when the stream can
	// take them. Zero: 1 MiB.
	MaxQueuedBytes int
	// StallCheck is the quiet period after which a (peer, document) pair
	// whose heads differ is soft-reset (doc.SyncState.CheckStall). Zero:
	// 2 s. Negative: off, a test knob (the stall of automerge #702 then
	// stays).
	StallCheck time.Duration
	// FindTimeout bounds Find's wait for peers that do not answer. Zero:
	// 10 s.
	FindTimeout time.Duration
	// Logger: nil means go-log's "convene/docsync".
	Logger *slog.Logger
}

func (c *Config) validate() error {
	if c.MaxFrame < 0 || c.MaxDocsPerPeer < 0 || c.MaxQueuedBytes < 0 || c.FindTimeout < 0 {
		return errors.New("docsync: negative limit in Config")
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	if c.MaxDocsPerPeer == 0 {
		c.MaxDocsPerPeer = 4096
	}
	if c.MaxQueuedBytes == 0 {
		c.MaxQueuedBytes = 1 << 20
	}
	if c.StallCheck == 0 {
		c.StallCheck = 2 * time.Second
	}
	if c.FindTimeout == 0 {
		c.FindTimeout = 10 * time.Second
	}
	if c.Allow == nil {
		c.Allow = func(peer.ID, string) Access { return ReadWrite }
	}
	if c.Share == nil {
		c.Share = func(peer.ID, string) bool { return true }
	}
	if c.Logger == nil {
		c.Logger = slog.New(golog.SlogHandler()).With("logger", "convene/docsync")
	}
	return nil
}

// AnnounceTopic is the GossipSub topic of a namespace's head announcements.
func AnnounceTopic(namespace string) string { return "/convene/docs/" + namespace + "/1" }

// Service syncs the documents tracked in it (Track) with every connected
// peer that runs ProtocolID. Safe for concurrent use.
type Service struct {
	cfg   Config
	host  host.Host
	docs  Docs
	stats stats
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
	topic *pubsub.Topic

	mu sync.Mutex
	// Announcements (see announce, announcements, recheck).
	toAnnounce map[string]bool // documents changed here since the last announce round
	annWake    chan struct{}   // cap 1
	adigests   map[Digest]string
	pending    map[pendKey]*pendingAnn
	dialed     map[peer.ID]time.Time
	dials      int

	closed  bool
	peers   map[peer.ID]*conn
	tracked map[string]*tracked
	digests map[Digest]string // of tracked, as we name them: DocDigest(self, id)
	finds   map[string]*find
}

// tracked is one document open here.
type tracked struct {
	h       *doc.Handle
	digest  Digest
	adigest Digest // AnnounceDigest
	w       *doc.Watcher
}

// New starts the service on h: it serves ProtocolID and syncs with every
// peer h is connected to now or later. Close stops it.
func New(h host.Host, docs Docs, cfg Config) (*Service, error) {
	if h == nil || docs == nil {
		return nil, errors.New("docsync: nil host or docs")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Service{
		cfg: cfg, host: h, docs: docs, ctx: ctx, stop: stop,
		peers:   make(map[peer.ID]*conn),
		tracked: make(map[string]*tracked),
		digests: make(map[Digest]string),
		finds:   make(map[string]*find),

		toAnnounce: make(map[string]bool),
		annWake:    make(chan struct{}, 1),
		adigests:   make(map[Digest]string),
		pending:    make(map[pendKey]*pendingAnn),
		dialed:     make(map[peer.ID]time.Time),
	}
	if cfg.PubSub != nil {
		if err := s.joinAnnounce(); err != nil {
			stop()
			return nil, err
		}
	}
	h.SetStreamHandler(protocol.ID(ProtocolID), s.handle)
	h.Network().Notify((*notifiee)(s))
	for _, p := range h.Network().Peers() {
		s.connect(p)
	}
	return s, nil
}

// Close stops syncing: every stream is reset, every goroutine waited for.
// Tracked handles are left open (their owner closes them). Idempotent.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]*conn, 0, len(s.peers))
	for _, c := range s.peers {
		conns = append(conns, c)
	}
	ts := make([]*tracked, 0, len(s.tracked))
	for _, t := range s.tracked {
		ts = append(ts, t)
	}
	for _, f := range s.finds {
		f.finish(ErrClosed)
	}
	s.mu.Unlock()
	s.host.RemoveStreamHandler(protocol.ID(ProtocolID))
	s.host.Network().StopNotify((*notifiee)(s))
	s.stop()
	for _, c := range conns {
		c.close()
	}
	for _, t := range ts {
		t.w.Close()
	}
	s.wg.Wait()
	if s.topic != nil {
		_ = s.topic.Close()
		_ = s.cfg.PubSub.UnregisterTopicValidator(AnnounceTopic(s.cfg.Namespace))
	}
	return nil
}

// Track starts syncing document h (open here) with every peer: connected
// peers the Share policy allows are told its digest and heads at once,
// and every change (local or from a peer) is offered to the peers syncing
// it. Tracking a tracked document does nothing.
func (s *Service) Track(h *doc.Handle) {
	id := h.ID()
	s.mu.Lock()
	if s.closed || s.tracked[id] != nil {
		s.mu.Unlock()
		return
	}
	t := &tracked{h: h, digest: DocDigest(s.host.ID(), id), adigest: AnnounceDigest(id), w: h.Watch()}
	s.tracked[id] = t
	s.digests[t.digest] = id
	s.adigests[t.adigest] = id
	conns := s.connsLocked()
	for _, c := range conns {
		if c.theirs != nil {
			c.theirs[DocDigest(c.peer, id)] = id
		}
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go s.watch(t)
	for _, c := range conns {
		c.offer(id, t)
	}
}

// Untrack stops syncing document id here (it was deleted): every peer
// syncing it is told Delete, and frames naming it are answered Delete.
func (s *Service) Untrack(id string) {
	s.mu.Lock()
	t := s.tracked[id]
	delete(s.tracked, id)
	delete(s.digests, DocDigest(s.host.ID(), id))
	delete(s.adigests, AnnounceDigest(id))
	delete(s.toAnnounce, id)
	conns := s.connsLocked()
	for _, c := range conns {
		if c.theirs != nil {
			delete(c.theirs, DocDigest(c.peer, id))
		}
	}
	s.mu.Unlock()
	if t != nil {
		t.w.Close()
	}
	for _, c := range conns {
		if c.drop(id) {
			c.queue(Frame{Type: Delete, Doc: id})
		}
	}
}

func (s *Service) connsLocked() []*conn {
	out := make([]*conn, 0, len(s.peers))
	for _, c := range s.peers {
		out = append(out, c)
	}
	return out
}

// watch offers every change of t to the peers syncing it and announces it.
func (s *Service) watch(t *tracked) {
	defer s.wg.Done()
	for {
		ev, err := t.w.Next(s.ctx)
		if err != nil {
			return
		}
		if ev.Type == doc.Deleted {
			return
		}
		s.mu.Lock()
		conns := s.connsLocked()
		s.mu.Unlock()
		for _, c := range conns {
			c.changed(t.h.ID())
		}
		if ev.Type != doc.Changed || ev.Origin.Local() {
			s.queueAnnounce(t.h.ID()) // a lag may hide a local change
		}
		s.settle(t.h.ID(), t.h)
	}
}

// Find waits until document h (open here, tracked, possibly empty) has
// data from a peer: it returns nil once it is non-empty, ErrUnavailable
// once every peer asked said Unavailable (or Delete) or FindTimeout ran out
// with it still empty; ctx bounds the wait. Peers asked: every connected
// peer the Share policy allows, and those connecting meanwhile.
func (s *Service) Find(ctx context.Context, h *doc.Handle) error {
	if !h.Empty() {
		return nil
	}
	id := h.ID()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	f := s.finds[id]
	var ask []*conn
	if f == nil {
		f = &find{done: make(chan struct{}), asked: make(map[peer.ID]bool)}
		s.finds[id] = f
		for p, c := range s.peers {
			if c.ready() && s.cfg.Share(p, id) {
				f.asked[p] = false
				ask = append(ask, c)
			}
		}
		f.check()
		f.timer = time.AfterFunc(s.cfg.FindTimeout, func() { s.settleFind(id, ErrUnavailable) })
	}
	s.mu.Unlock()
	s.Track(h)
	// Ask again now that f is registered: if h was tracked before Find,
	// the peers' Unavailable answers to that first Have may have come
	// before f existed and been lost, leaving Find to the timeout.
	if t := s.trackedDoc(id); t != nil {
		for _, c := range ask {
			c.offer(id, t)
		}
	}
	if !h.Empty() {
		s.settleFind(id, nil)
	}
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// find is one Find in progress; guarded by Service.mu.
type find struct {
	done  chan struct{}
	err   error
	timer *time.Timer
	asked map[peer.ID]bool // peer → answered unavailable
	// open: no peer was ever asked yet (a peer connecting will be).
}

func (f *find) finish(err error) {
	select {
	case <-f.done:
	default:
		f.err = err
		if f.timer != nil {
			f.timer.Stop()
		}
		close(f.done)
	}
}

// check finishes f with ErrUnavailable if peers were asked and every one
// answered Unavailable.
func (f *find) check() {
	if len(f.asked) == 0 {
		return
	}
	for _, no := range f.asked {
		if !no {
			return
		}
	}
	f.finish(ErrUnavailable)
}

func (s *Service) settleFind(id string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.finds[id]; f != nil {
		f.finish(err)
		delete(s.finds, id)
	}
}

// settle ends a Find of id once h has data.
func (s *Service) settle(id string, h *doc.Handle) {
	if !h.Empty() {
		s.settleFind(id, nil)
	}
}

// unavailable records that p will not give us id (for Find).
func (s *Service) unavailable(p peer.ID, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.finds[id]; f != nil {
		if _, ok := f.asked[p]; ok {
			f.asked[p] = true
		}
		f.check()
		select {
		case <-f.done:
			delete(s.finds, id)
		default:
		}
	}
}

// asked records that p was asked about id (a Have sent), for Find.
func (s *Service) askedPeer(p peer.ID, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.finds[id]; f != nil {
		if _, ok := f.asked[p]; !ok {
			f.asked[p] = false
		}
	}
}

// trackedDoc returns the tracked handle of id.
func (s *Service) trackedDoc(id string) *tracked {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tracked[id]
}

// lookup returns the handle of id for a peer that named it: tracked, or
// found by Docs (and then tracked).
func (s *Service) lookup(id string) (h *doc.Handle, deleted bool, err error) {
	if t := s.trackedDoc(id); t != nil {
		return t.h, false, nil
	}
	h, deleted, err = s.docs.Lookup(s.ctx, id)
	if err != nil || h == nil {
		return nil, deleted, err
	}
	s.Track(h)
	return h, false, nil
}

// Stats returns the service's counters.
func (s *Service) Stats() Stats { return s.stats.snapshot() }

// notifiee starts a session with every newly connected peer and ends it
// when the last connection closes.
type notifiee Service

func (n *notifiee) Connected(_ network.Network, c network.Conn) {
	(*Service)(n).connect(c.RemotePeer())
}

func (n *notifiee) Disconnected(net network.Network, c network.Conn) {
	s := (*Service)(n)
	p := c.RemotePeer()
	if net.Connectedness(p) == network.Connected {
		return
	}
	s.mu.Lock()
	cn := s.peers[p]
	if cn != nil {
		delete(s.peers, p)
	}
	s.mu.Unlock()
	if cn != nil {
		go cn.close() // not on the notifier's goroutine
	}
}

func (*notifiee) Listen(network.Network, multiaddr.Multiaddr)      {}
func (*notifiee) ListenClose(network.Network, multiaddr.Multiaddr) {}

// connect starts a session with p unless one runs.
func (s *Service) connect(p peer.ID) {
	if p == s.host.ID() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	// A session that just failed is replaced at once: its ended (which
	// forgets it) may not have run yet, and a stream the peer opens
	// meanwhile would meet a closed session and be reset unread.
	if old := s.peers[p]; old != nil && old.ctx.Err() == nil {
		return
	}
	c := newConn(s, p)
	s.peers[p] = c
	s.wg.Add(1)
	go c.write()
}

// ended is called by a conn whose session failed: it is forgotten, and a
// new session starts after a pause if p is still connected and speaks the
// protocol.
func (s *Service) ended(c *conn, retry bool) {
	s.mu.Lock()
	if s.peers[c.peer] == c {
		delete(s.peers, c.peer)
	}
	closed := s.closed
	s.mu.Unlock()
	if closed || !retry {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-time.After(retryPause):
		case <-s.ctx.Done():
			return
		}
		if s.host.Network().Connectedness(c.peer) == network.Connected {
			s.connect(c.peer)
		}
	}()
}

// retryPause is the wait before a failed session is started again.
const retryPause = 500 * time.Millisecond

// handle serves an inbound stream: the peer's frames to us.
func (s *Service) handle(st network.Stream) {
	p := st.Conn().RemotePeer()
	s.connect(p)
	s.mu.Lock()
	c := s.peers[p]
	if s.closed || c == nil {
		s.mu.Unlock()
		_ = st.Reset()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	c.read(st)
}

func newSession() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// readFrames reads frames from st into fn until an error.
func readFrames(st network.Stream, max int, fn func(Frame, int) error) error {
	r := bufio.NewReader(st)
	for {
		f, n, err := ReadFrame(r, max)
		if errors.Is(err, ErrUnknownType) {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := fn(f, n); err != nil {
			return err
		}
	}
}

// origin is p as a document change's origin.
func origin(p peer.ID) ephemeral.PeerID { return ephemeral.PeerID(p) }
