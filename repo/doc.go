// Package repo is Convene's entry point: a Repo owns a libp2p host (or
// runs on yours), GossipSub, the rooms you join through it and your
// documents, and reports what happens to them as forward-only events.
//
// # The whole flow
//
//	ctx := context.Background()
//	r, err := repo.New(ctx, repo.Config{
//		Name: "Alice",                                 // what others see (self-asserted)
//		Host: p2p.Config{KeyFile: "alice.key"},        // keep the peer ID across restarts
//	})
//	if err != nil { ... }
//	defer func() {
//		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
//		defer cancel()
//		r.Shutdown(ctx) // says goodbye in every room (bounded by ctx), then stops everything
//	}()
//
//	// Peers on the same LAN find each other by mDNS; others by address
//	// (r.Connect) or through the DHT (p2p.Config.Bootstrap).
//
//	lobby, err := r.JoinRoom(ctx, "lobby", room.Config{}) // zero: Config.Room, else room.DefaultConfig
//	if err != nil { ... }
//
//	// Presence: your own keys, last-write-wins, ordered by your logical clock.
//	lobby.SetJSON("cursor", map[string]int{"x": 100, "y": 200})
//	lobby.SetTTL("typing", []byte("true"), 10*time.Second) // vanishes by itself
//
//	// State first ...
//	for _, m := range lobby.Members() { fmt.Println(m.Name) }   // self included
//	for peer, state := range lobby.States() { ... }             // peer → key → value
//
//	// ... then events, forward-only: room events (presence, members,
//	// broadcasts) from the Room, lifecycle and membership of every room from
//	// the Repo.
//	w := lobby.Watch()
//	defer w.Close()
//	for {
//		ev, err := w.Next(ctx)
//		if err != nil { break } // room.ErrClosed after RoomDestroyed
//		switch ev.Type {
//		case room.MemberJoined, room.MemberLeft: ...     // ev.Member, ev.Reason (left or timeout)
//		case room.PresenceChanged: ...                   // ev.Change: peer, keys added/updated/removed, cause
//		case room.Broadcast: ...                         // ev.Payload from ev.Member
//		case room.Lagged: ...                            // you fell behind: re-read Members/States
//		}
//	}
//
//	lobby.Broadcast(ctx, []byte("hello, room"))         // fire and forget, not stored
//	r.LeaveRoom(ctx, "lobby")                           // goodbye; the room lingers, then is destroyed
//
// # Rooms and their lifecycle
//
// JoinRoom creates a room locally on its first join (event RoomCreated)
// and returns its *room.Room handle; joining a room that is already joined
// returns the same handle. Leave (LeaveRoom, or Leave on the handle) sends
// a signed goodbye: every other member drops the local peer at once with
// reason left. The room then lingers for its Config.Linger (default: its
// Timeout) — still listed by Rooms and Room, still receiving — and is then
// destroyed (RoomDestroyed; Rooms no longer lists it), unless JoinRoom is
// called again meanwhile, which rejoins the same room with a new epoch.
// Nothing about rooms is persisted: rooms do not survive a restart.
//
// A member that crashes (no goodbye) is dropped with reason timeout:
// about half a second after its connections close (a failed probe and a
// 500ms restart grace), at the latest Timeout after it was last heard.
// A peer that restarts with the same key is one member whose new state
// replaces the old at once — while its old process still runs, is frozen
// (SIGSTOP: its stale connection is detected within a second), or crashed
// less than that half second before; a restart later than that shows as
// member-left (timeout) then member-joined. See package room ("Restart")
// for exactly when.
//
// # Events
//
// Repo events cover every room: RoomCreated, RoomDestroyed, MemberJoined,
// MemberLeft (with the reason) and MemberUpdated, about remote members
// only (the local peer's own joins and leaves are the lifecycle events,
// and calls you made). They are forward-only: query Rooms and Members
// first, then Watch. Members a room admitted before anyone could watch it
// are reported as MemberJoined right after its RoomCreated, so a watcher
// that starts before a JoinRoom sees, per room, a well-formed sequence:
// RoomCreated, then joins and leaves (a member joins before it leaves),
// then RoomDestroyed, and again if the room is created anew.
//
// The policy for slow consumers: each Watcher buffers Config.EventBuffer
// events (256 by default); beyond that, newer events are dropped and
// counted, and the watcher receives one Lagged event with the count when
// it has read what was buffered. A watcher that is never read costs at
// most its buffer; it never slows a room, the Repo, or other watchers.
// Room watchers (room.Room.Watch) follow the same policy, per room.
//
// # Documents
//
// Beside rooms, a Repo holds persistent CRDT documents (Automerge, package
// doc), saved through Config.Storage (nil: memory; storage.OpenBolt for a
// durable file). Rooms and documents are unrelated: storage never sees room
// data.
//
//	st, err := storage.OpenBolt(filepath.Join(dir, "docs.bolt"), storage.BoltOptions{})
//	r, err := repo.New(ctx, repo.Config{Storage: st})
//	h, err := r.Doc(ctx, "chat-general-messages") // get or create (loaded if stored)
//	err = h.Change(func(tx *doc.Tx) error {       // one commit, one Changed event
//		return tx.Append(doc.Path{"messages"}, map[string]any{"from": "ana", "text": "hi"})
//	})
//	msgs, _, err := h.Get(doc.Path{"messages"})
//	w := h.Watch()                                // doc.Changed{Origin, Before, After}
//	err = r.FlushDocs(ctx)                        // durable now (else within 100 ms)
//	r.DocIDs(); r.HasDoc(id)
//	err = r.DeleteDoc(ctx, id)                    // local, with a tombstone
//
// Doc emits DocCreated the first time it opens an ID in this Repo;
// DeleteDoc emits DocDestroyed. DocWith gives a new document a schema as
// its deterministic genesis, so peers that create the same document share
// its containers. docs/STORAGE.md states what is durable when.
//
// Documents sync with every connected peer (package docsync), and every
// local change is announced on the namespace's GossipSub topic
// (docsync.AnnounceTopic(Config.DocSync.Namespace): a digest and the
// heads, never the ID), on by default: a peer holding the document that
// still lacks those heads a second later nudges its session with the
// announcer, or dials the announcer if it has no connection to it (at
// the addresses its peerstore has for it: from an earlier connection,
// mDNS or the DHT; with none it stays behind). So a change reaches a peer
// that is connected only through peers without the document.
// Config.DisableAnnouncements turns them off. docs/PROTOCOL.md part 4
// ("Announcements") is the specification.
//
// # Stopping
//
// Shutdown and Close are net/http's pair. Shutdown(ctx) is the graceful
// stop: a goodbye in every joined room (others see the member leave with
// reason left at once), then everything is released; every wait on the
// network is bounded by ctx, and should ctx end first, the rest happens at
// once and ctx's error is returned. Close is the immediate stop: no
// goodbyes, nothing waited for on the network (others see reason timeout,
// about half a second after the connections close). Both save and close
// every open document: storage is local, so an immediate stop loses
// nothing that was written. Both are idempotent; the first call of either
// decides the result that every later call of either returns, and a Close
// during a Shutdown cuts its waits short (the CLI's second Ctrl-C).
//
// # Hosts
//
// By default New builds the libp2p host from Config.Host (package p2p:
// identity key, TCP and QUIC on all interfaces, mDNS, optional DHT) and
// closes it in Shutdown and Close. An application that already runs libp2p passes its
// host as Config.Libp2pHost: the Repo then starts only GossipSub and the
// rooms on it, and leaves the host (and discovery) to the application.
// LocalConfig is the preset for tests and demos on one machine (loopback
// TCP, no discovery, short room timings).
//
// # Partitions, crashes and quits
//
// A Repo that built its host (no Config.Libp2pHost) finds its room members
// again by itself after a partition, whatever closed the connections: the
// host keeps every room member it heard from while connected (and every
// peer discovery brought), redials a kept peer whose last connection
// closed, with backoff and jitter, and meanwhile asks mDNS again and
// re-runs the DHT rendezvous (package p2p, "Healing after a partition").
// A member that said goodbye in every room it shared is forgotten. What
// this guarantees, with the measured figures, is in docs/PROTOCOL.md
// ("After partitions, crashes and quits"): a room split by a partition is
// whole again within 10 s after the link returns (40 s after a partition
// of more than 5 minutes); members that share a DHT are one mesh again
// within 5 s after losing the peer that linked them; a quit is seen as
// left, not timeout, by every member the leaver's neighbours can reach.
// On a caller's host (Config.Libp2pHost) none of this runs: reconnecting
// is the application's.
//
// # Errors
//
// ErrClosed after Shutdown or Close; ErrUnknownRoom from LeaveRoom for a room that
// does not exist; ErrDeleted from Doc for a deleted document; room.ErrInvalidID for a bad room ID; room errors
// (room.ErrNotJoined, room.ErrClosed, presence limits) from the handle.
package repo
