package repo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/docsync"
	"github.com/convene-p2p/convene/gossip"
	"github.com/convene-p2p/convene/internal/stop"
	"github.com/convene-p2p/convene/internal/watch"
	"github.com/convene-p2p/convene/p2p"
	"github.com/convene-p2p/convene/room"
	"github.com/convene-p2p/convene/storage"
)

// Errors returned by the Repo.
var (
	ErrClosed      = errors.New("repo: closed")
	ErrUnknownRoom = errors.New("repo: unknown room")
)

// Config configures a Repo. The zero value is usable: an ephemeral identity
// (set Host.KeyFile to keep one), mDNS on, TCP and QUIC on random ports, and
// room.DefaultConfig for rooms joined with a zero room.Config. LocalConfig
// is the preset for tests and demos on one machine.
type Config struct {
	// Name is the self-asserted display name other members see.
	Name string
	// Meta is self-asserted display data other members see.
	Meta map[string]string
	// Host configures the libp2p host the Repo builds when Libp2pHost is nil.
	Host p2p.Config
	// Libp2pHost, if set, is an existing host to run on (an app that already
	// runs libp2p). The Repo then neither builds discovery (mDNS, DHT) nor
	// closes the host.
	Libp2pHost host.Host
	// PubSub, if set, is the app's own GossipSub router on Libp2pHost
	// (which it requires): the Repo runs its rooms on it (gossip.Attach)
	// instead of starting a second router, which would take over the
	// app's GossipSub streams; Shutdown and Close leave it running. It must use the
	// default StrictSign policy and message IDs; turn flood publishing
	// and peer scoring on in it for the join and scoring guarantees of
	// docs/PROTOCOL.md ("Embedding"). Without it, New on a host that
	// already runs GossipSub fails with gossip.ErrPubSubRunning.
	PubSub *pubsub.PubSub
	// Gossip configures GossipSub and room-topic validation.
	Gossip gossip.Config
	// Room is the room configuration used by JoinRoom when it is given a
	// zero room.Config. Zero means room.DefaultConfig().
	//
	// Presence limits have one source of truth, the limits every relay
	// checks (Gossip.Limits): a limit set in Room.Limits is taken as the
	// gossip layer's too, New refuses the two set to different values, and
	// JoinRoom refuses a room config whose limits differ from them or whose
	// full state (32 keys × 1 KiB by default) would not fit in
	// Gossip.MaxMessageSize (64 KiB by default).
	Room room.Config
	// Logger, if set, receives the diagnostics of the Repo and, unless they
	// set their own Logger, of its gossip layer (and pubsub's) and of every
	// room joined through it, each record tagged with its subsystem
	// ("logger": "convene/repo", "convene/gossip", "pubsub",
	// "convene/room"). Nil means go-log's subsystems of those names, quiet
	// unless GOLOG_LOG_LEVEL says otherwise.
	Logger *slog.Logger
	// roomLogger is Logger for rooms whose config sets none (validate).
	roomLogger *slog.Logger
	// Metrics, if set, is where the Repo registers its Prometheus metrics
	// (prefix convene_: gossip counters, peer scores, rooms, members and
	// presence keys per room; see docs/METRICS.md) and, on a host the Repo
	// builds, libp2p's own (libp2p.PrometheusRegisterer). Shutdown and
	// Close unregister Convene's. Nil means no metrics.
	Metrics prometheus.Registerer
	// EventBuffer is how many events each Watcher buffers before it lags
	// (see Watch). Zero means 256.
	EventBuffer int
	// Storage is where documents are kept (see Doc). Nil means memory
	// only (storage.NewMemory, closed by Shutdown and Close); a caller's
	// adapter is flushed by them but not closed. It never sees room data.
	Storage storage.Adapter
	// Docs are the defaults of every document (save debounce, size limit,
	// schema Init, event buffer; see doc.Options). Its Storage must be
	// nil: set Storage above.
	Docs doc.Options
	// docLogger is Logger for documents when Docs.Logger is nil.
	docLogger *slog.Logger
	// DocSync configures document sync with peers (docsync.Config: the
	// Allow and Share policies, limits, the namespace). Documents open
	// here sync with every connected peer as soon as it connects, and
	// their changes are announced (digest and heads, never the ID) on the
	// namespace's GossipSub topic, docsync.AnnounceTopic(DocSync.Namespace):
	// on the router the Repo starts, which admits that one topic besides
	// rooms, or on the app's Config.PubSub if set. DocSync.PubSub, if set,
	// replaces either.
	DocSync docsync.Config
	// DisableAnnouncements turns the head announcements off (they are on
	// by default): documents then sync only over the sessions with
	// connected peers, and a change reaches a peer with no session to a
	// holder of it only once one opens. It may not be set with
	// DocSync.PubSub.
	DisableAnnouncements bool
}

// LocalConfig is the preset for tests and demos on one machine: a host on
// loopback TCP only, with no mDNS, DHT or relay (p2p.LocalConfig), and
// rooms with short timings (room.LocalConfig: Timeout 3 s, heartbeat 1 s,
// linger 3 s). Peers find each other only through Connect.
func LocalConfig() Config {
	return Config{Host: p2p.LocalConfig(), Room: room.LocalConfig()}
}

func (c *Config) validate() error {
	if c.EventBuffer < 0 {
		return fmt.Errorf("repo: negative EventBuffer %d", c.EventBuffer)
	}
	if c.EventBuffer == 0 {
		c.EventBuffer = 256
	}
	if c.Room == (room.Config{}) {
		c.Room = room.DefaultConfig()
	}
	// One truth for the presence limits: every relay checks the gossip
	// layer's, so a limit set on the rooms is the gossip layer's too
	// (room.New then refuses a room whose limits differ from its topic's).
	lim, err := c.Gossip.Limits.Merge(c.Room.Limits)
	if err != nil {
		return fmt.Errorf("repo: config: Room.Limits and Gossip.Limits: %w", err)
	}
	c.Gossip.Limits = lim
	if c.Docs.Storage != nil {
		return errors.New("repo: config: set Storage, not Docs.Storage")
	}
	if c.PubSub != nil && c.Libp2pHost == nil {
		return errors.New("repo: config: PubSub needs the Libp2pHost it runs on")
	}
	if c.DisableAnnouncements && c.DocSync.PubSub != nil {
		return errors.New("repo: config: DisableAnnouncements with DocSync.PubSub set")
	}
	if c.Logger == nil {
		c.Logger = slog.New(golog.SlogHandler()).With("logger", "convene/repo")
	} else {
		if c.Gossip.Logger == nil {
			c.Gossip.Logger = c.Logger // gossip tags its records itself
		}
		c.roomLogger = c.Logger.With("logger", "convene/room")
		c.docLogger = c.Logger.With("logger", "convene/doc")
		c.Logger = c.Logger.With("logger", "convene/repo")
	}
	return nil
}

// Repo is the entry point: it owns the libp2p host (unless given one), the
// GossipSub router and the rooms joined through it. Safe for concurrent use.
type Repo struct {
	cfg    Config
	host   host.Host
	p2p    *p2p.Host // nil when running on a caller's host
	router *gossip.Router
	self   room.Identity
	events *watch.Broker[Event]
	docs   docs // docs.go
	sync   *docsync.Service
	// metrics is registered in cfg.Metrics (nil without it).
	metrics *collector

	mu     sync.Mutex
	rooms  map[string]*entry
	closed bool
	// memberOf are the rooms each remote member is known in (by the
	// forward goroutines), so that a goodbye in the last of them makes
	// the host forget it (p2p.Host.Forget).
	memberOf map[room.PeerID]map[string]bool
	wg       sync.WaitGroup

	stop stop.Once // Shutdown, Close
}

// entry is one room of the Repo, joined or lingering. Its forward
// goroutine removes it from Repo.rooms once the room is destroyed, publishes
// RoomDestroyed and then closes gone.
type entry struct {
	room       *room.Room
	rendezvous func()
	watcher    *room.Watcher
	gone       chan struct{}
	// known are the remote members reported through MemberJoined and not
	// yet through MemberLeft (owned by the forward goroutine after JoinRoom).
	known map[room.PeerID]bool
}

// New builds a Repo: the host (unless cfg.Libp2pHost is set), GossipSub and
// discovery. Shutdown (graceful) or Close (immediate) releases everything.
func New(ctx context.Context, cfg Config) (*Repo, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Repo{
		cfg:      cfg,
		rooms:    make(map[string]*entry),
		memberOf: make(map[room.PeerID]map[string]bool),
		events: watch.New(cfg.EventBuffer, func(n int) Event {
			return Event{Type: Lagged, Dropped: n}
		}),
	}
	if err := r.initDocs(ctx); err != nil {
		return nil, err
	}
	if cfg.Libp2pHost != nil {
		r.host = cfg.Libp2pHost
	} else {
		hc := cfg.Host
		if cfg.Metrics != nil {
			hc.Options = append(slices.Clone(hc.Options), libp2p.PrometheusRegisterer(cfg.Metrics))
		}
		h, err := p2p.New(ctx, hc)
		if err != nil {
			_ = r.closeDocs()
			return nil, fmt.Errorf("repo: %w", err)
		}
		r.p2p = h
		r.host = h.Host()
	}
	var (
		router *gossip.Router
		err    error
	)
	if cfg.PubSub != nil {
		router, err = gossip.Attach(r.host, cfg.PubSub, cfg.Gossip)
	} else {
		router, err = gossip.NewWithTopics(ctx, r.host, cfg.Gossip, r.announceTopics()...)
	}
	if err != nil {
		if r.p2p != nil {
			_ = r.p2p.Close()
		}
		_ = r.closeDocs()
		return nil, fmt.Errorf("repo: %w", err)
	}
	r.router = router
	if err := r.startSync(); err != nil {
		_ = router.Close()
		if r.p2p != nil {
			_ = r.p2p.Close()
		}
		_ = r.closeDocs()
		return nil, fmt.Errorf("repo: %w", err)
	}
	r.self = room.Identity{Peer: room.PeerID(r.host.ID()), Name: cfg.Name, Meta: maps.Clone(cfg.Meta)}
	if cfg.Metrics != nil {
		r.metrics = newCollector(r)
		if err := cfg.Metrics.Register(r.metrics); err != nil {
			_ = r.Close()
			return nil, fmt.Errorf("repo: register metrics: %w", err)
		}
	}
	return r, nil
}

// Self is the local peer's identity in every room.
func (r *Repo) Self() room.Identity {
	id := r.self
	id.Meta = maps.Clone(id.Meta)
	return id
}

// ID is the local libp2p peer ID.
func (r *Repo) ID() peer.ID { return r.host.ID() }

// Host is the libp2p host the Repo runs on.
func (r *Repo) Host() host.Host { return r.host }

// Addrs are the local listen addresses, each ending in /p2p/<peer ID>, in a
// form another node can dial (for example as a bootstrap peer).
func (r *Repo) Addrs() []multiaddr.Multiaddr {
	return p2p.Addrs(r.host)
}

// Stats returns the counters of the Repo's GossipSub layer, summed over
// every room it has had: own messages published, remote messages accepted,
// and those rejected by reason (malformed, oversized, wrong author, over
// the rate limit). See gossip.Stats.
func (r *Repo) Stats() gossip.Stats { return r.router.Stats() }

// PeerScores returns the GossipSub peer scores of the Repo's router
// (gossip.Router.PeerScores: refreshed every second, below -80 graylisted).
func (r *Repo) PeerScores() map[peer.ID]float64 { return r.router.PeerScores() }

// MDNSError reports why LAN discovery (mDNS) is not running although it was
// asked for (for example: no up interface with multicast), or nil. It is
// always nil on a caller's host (Config.Libp2pHost) and with mDNS off.
func (r *Repo) MDNSError() error {
	if r.p2p == nil {
		return nil
	}
	return r.p2p.MDNSError()
}

// Connect dials a peer given as a multiaddr ending in /p2p/<peer ID>
// (p2p.Connect: the same parsing and errors as p2p.Host.Connect).
func (r *Repo) Connect(ctx context.Context, addr string) error {
	var err error
	if r.p2p != nil {
		err = r.p2p.Connect(ctx, addr)
	} else {
		err = p2p.Connect(ctx, r.host, addr)
	}
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	return nil
}

// JoinRoom joins room id and returns its handle. A room already joined is
// returned as it is; a room lingering after Leave is rejoined (a new epoch:
// others see a fresh incarnation) and keeps the config it was created with.
// A zero cfg means the Repo's Config.Room. The first join of a room (and the
// first join after it was destroyed) emits RoomCreated, followed by
// MemberJoined for any remote member the room already knows.
//
// ctx bounds only a rejoin's hello and the wait for a room that is being
// destroyed at that moment.
func (r *Repo) JoinRoom(ctx context.Context, id string, cfg room.Config) (*room.Room, error) {
	if err := room.ValidateID(id); err != nil {
		return nil, err
	}
	if cfg == (room.Config{}) {
		cfg = r.cfg.Room
	}
	if cfg.Logger == nil {
		cfg.Logger = r.cfg.roomLogger // nil: the room's go-log default
	}
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, ErrClosed
		}
		e, ok := r.rooms[id]
		if !ok {
			defer r.mu.Unlock()
			return r.create(id, cfg)
		}
		r.mu.Unlock()
		if e.room.Status() != room.Closed {
			// Rejoin is a no-op on a joined room.
			err := e.room.Rejoin(ctx)
			if err == nil {
				return e.room, nil
			}
			if !errors.Is(err, room.ErrClosed) {
				return nil, fmt.Errorf("repo: rejoin %q: %w", id, err)
			}
		}
		// The room is being destroyed (its linger just ran out): wait
		// until it is forgotten, then create it anew.
		select {
		case <-e.gone:
		case <-ctx.Done():
			return nil, fmt.Errorf("repo: join %q: %w", id, ctx.Err())
		}
	}
}

// create opens room id; r.mu is held.
func (r *Repo) create(id string, cfg room.Config) (*room.Room, error) {
	topic, err := r.router.Join(id)
	if err != nil {
		return nil, fmt.Errorf("repo: join %q: %w", id, err)
	}
	rm, err := room.New(id, r.self, cfg, topic)
	if err != nil {
		_ = topic.Close() // idempotent; New leaves it open if cfg is invalid
		return nil, fmt.Errorf("repo: join %q: %w", id, err)
	}
	e := &entry{
		room:       rm,
		watcher:    rm.Watch(),
		rendezvous: func() {},
		gone:       make(chan struct{}),
		known:      make(map[room.PeerID]bool),
	}
	if r.p2p != nil {
		e.rendezvous = r.p2p.Rendezvous(gossip.TopicName(id))
	}
	r.rooms[id] = e
	r.events.Publish(Event{Type: RoomCreated, Room: id})
	// The room runs from New on: members it admitted before Watch are in
	// Members but not in the watcher. Report them now; forward skips
	// their MemberJoined if the watcher has it too.
	for _, m := range rm.Members() {
		if m.Peer != r.self.Peer {
			e.known[m.Peer] = true
			r.keepLocked(id, m.Peer)
			r.events.Publish(Event{Type: MemberJoined, Room: id, Member: m})
		}
	}
	r.wg.Add(1)
	go r.forward(e)
	return rm, nil
}

// keep asks the host to stay connected to a member of room id: if its last
// connection closes (a partition), the host redials it and re-runs
// discovery (p2p.Host.Keep). A member heard only through others is dialled
// only once it has been connected and lost. The host is not asked on a
// caller's host.
func (r *Repo) keep(id string, p room.PeerID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keepLocked(id, p)
}

func (r *Repo) keepLocked(id string, p room.PeerID) {
	if r.memberOf[p] == nil {
		r.memberOf[p] = make(map[string]bool)
	}
	r.memberOf[p][id] = true
	if r.p2p != nil {
		r.p2p.Keep(peer.ID(p))
	}
}

// drop records that member p is gone from room id; after a goodbye in the
// last room it was known in, the host forgets it (no redials of a peer
// that left). A member dropped by timeout stays kept: it may be behind a
// partition.
func (r *Repo) drop(id string, p room.PeerID, reason room.LeaveReason) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.memberOf[p], id)
	if len(r.memberOf[p]) > 0 {
		return
	}
	delete(r.memberOf, p)
	if reason == room.ReasonLeft && r.p2p != nil {
		r.p2p.Forget(peer.ID(p))
	}
}

// forward turns one room's events about remote members into Repo events,
// and forgets the room once it is destroyed. Events about the local peer
// (Leave, Rejoin) are not forwarded: RoomCreated and RoomDestroyed report
// the local lifecycle.
func (r *Repo) forward(e *entry) {
	defer r.wg.Done()
	id := e.room.ID()
	for {
		ev, err := e.watcher.Next(context.Background())
		if err != nil {
			break
		}
		if ev.Type != room.Lagged && ev.Member.Peer == r.self.Peer {
			continue
		}
		switch ev.Type {
		case room.MemberJoined:
			if e.known[ev.Member.Peer] {
				continue // already reported by create
			}
			e.known[ev.Member.Peer] = true
			r.keep(id, ev.Member.Peer)
			r.events.Publish(Event{Type: MemberJoined, Room: id, Member: ev.Member})
		case room.MemberLeft:
			if !e.known[ev.Member.Peer] {
				continue // joined and left before the room was watched
			}
			delete(e.known, ev.Member.Peer)
			r.drop(id, ev.Member.Peer, ev.Reason)
			r.events.Publish(Event{Type: MemberLeft, Room: id, Member: ev.Member, Reason: ev.Reason})
		case room.MemberUpdated:
			if e.known[ev.Member.Peer] {
				r.events.Publish(Event{Type: MemberUpdated, Room: id, Member: ev.Member})
			}
		case room.Lagged:
			// The room dropped events for this forwarder: resynchronise
			// from Members and tell the Repo's watchers to re-read state.
			old := make(map[room.PeerID]bool, len(e.known))
			for p := range e.known {
				old[p] = true
			}
			clear(e.known)
			for _, m := range e.room.Members() {
				if m.Peer != r.self.Peer {
					e.known[m.Peer] = true
					r.keep(id, m.Peer)
				}
			}
			for p := range old {
				if !e.known[p] {
					r.drop(id, p, room.ReasonTimeout) // why is lost: stay kept
				}
			}
			r.events.Publish(Event{Type: Lagged, Room: id, Dropped: ev.Dropped})
		}
	}
	// The watcher may end (RoomDestroyed) before the room has closed its
	// network; Done is closed after. Only then can the room be joined anew.
	<-e.room.Done()
	e.rendezvous()
	for p := range e.known {
		r.drop(id, p, room.ReasonTimeout) // we left; they did not: stay kept
	}
	r.mu.Lock()
	if r.rooms[id] == e {
		delete(r.rooms, id)
	}
	// Under r.mu, so that a JoinRoom creating the room anew publishes its
	// RoomCreated after this.
	r.events.Publish(Event{Type: RoomDestroyed, Room: id})
	r.mu.Unlock()
	close(e.gone)
}

// LeaveRoom sends a goodbye in room id (waiting, bounded by ctx, until it is
// handed to the network); the room lingers for its Linger (default: its
// Timeout) and is then destroyed unless rejoined. It is room.Leave on
// Room(id); ErrUnknownRoom if there is no such room, ErrClosed after
// Shutdown or Close.
func (r *Repo) LeaveRoom(ctx context.Context, id string) error {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return ErrClosed
	}
	rm, ok := r.Room(id)
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownRoom, id)
	}
	return rm.Leave(ctx)
}

// Room returns the room with this ID, joined or lingering.
func (r *Repo) Room(id string) (*room.Room, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.rooms[id]
	if !ok {
		return nil, false
	}
	return e.room, true
}

// Rooms returns every room, joined or lingering, sorted by ID.
func (r *Repo) Rooms() []*room.Room {
	r.mu.Lock()
	out := make([]*room.Room, 0, len(r.rooms))
	for _, e := range r.rooms {
		out = append(out, e.room)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b *room.Room) int {
		switch {
		case a.ID() < b.ID():
			return -1
		case a.ID() > b.ID():
			return 1
		}
		return 0
	})
	return out
}

// Watch returns a forward-only watcher of Repo events: query Rooms() and
// Members() first, then watch. Each watcher buffers Config.EventBuffer
// events; a consumer that falls further behind loses the newer events and,
// once it has read what was buffered, receives one Lagged event saying how
// many were lost (then re-read Rooms and Members). A slow or absent
// consumer never slows a room down. Events of one room arrive in the order
// the room produced them.
func (r *Repo) Watch() *Watcher { return &Watcher{w: r.events.Watch()} }

// Shutdown stops the Repo gracefully (net/http's Shutdown): it leaves
// every joined room with a goodbye (room.Room.Shutdown, in every room at
// once), saves and closes every open document (as Close does), shuts the
// GossipSub router down (waiting until the goodbyes are written to the
// peers' streams) and then closes the host, if the Repo built it. Every
// wait on the network is bounded by ctx: if ctx ends first (or had ended
// already: no goodbye is sent then), the rest is done at once as by Close,
// everything is still released (no goroutine is left behind), and
// Shutdown returns ctx's error, joined with any other. Shutdown and Close
// stop the Repo once; every later call of either returns the first one's
// result. A Close during a Shutdown cuts its waits short.
func (r *Repo) Shutdown(ctx context.Context) error {
	return r.stop.Shutdown(ctx, r.shutdown)
}

// Close stops the Repo at once (net/http's Close): no goodbyes and no
// waiting on the network. Others drop the local peer from every room with
// reason timeout (at once where the closed connections are noticed,
// within the room's Timeout at the latest). Documents are still saved
// (bounded by 10 s; local storage, so nothing written is lost) and
// closed; the rooms, the GossipSub router and, if the Repo built it, the
// host are closed. It is idempotent and returns the same result every
// time (see Shutdown).
func (r *Repo) Close() error {
	return r.stop.Close(r.shutdown)
}

// shutdown is the Repo's stop (Shutdown, Close).
func (r *Repo) shutdown(ctx context.Context, graceful bool) error {
	r.mu.Lock()
	r.closed = true
	entries := make([]*entry, 0, len(r.rooms))
	for _, e := range r.rooms {
		entries = append(entries, e)
	}
	r.mu.Unlock()

	errs := make([]error, len(entries), len(entries)+3)
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Go(func() {
			if graceful {
				errs[i] = e.room.Shutdown(ctx)
			} else {
				errs[i] = e.room.Close()
			}
		})
	}
	wg.Wait()
	r.wg.Wait()
	_ = r.sync.Close()
	errs = append(errs, r.closeDocs())
	r.events.Close()
	if r.metrics != nil {
		r.cfg.Metrics.Unregister(r.metrics)
	}
	if graceful {
		errs = append(errs, r.router.Shutdown(ctx))
	} else {
		errs = append(errs, r.router.Close())
	}
	if r.p2p != nil {
		errs = append(errs, r.p2p.Close())
	}
	return stop.Result(ctx, false, errs...)
}
