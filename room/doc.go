// Package room runs one Convene room: who is here, what each member's
// presence is, and what happens when peers join, leave, crash or restart.
//
// A Room is created with New over a roomnet.Network (the gossip package implements
// it on a GossipSub topic; this package has no libp2p import). The user
// holds the *Room: Set/Delete the local presence, read anyone's with
// Get/State/States, list Members, Broadcast, Watch events, and finally
// Leave (graceful) or Close (immediate).
//
// # Structure: pure core, imperative shell
//
// The room's logic is an unexported state machine with no goroutines,
// locks, I/O or clock reads (time is an argument of every input). It owns
// the room's ephemeral.Store (the presence, ordered by the authors' logical
// versions) and the member table (identity, epoch, last heard on the local
// clock). Its inputs are API calls, network events, fetch results and timer
// ticks; its outputs are messages to publish, events, fetches to start, and
// the next deadline.
//
// One goroutine per room (the loop) owns the machine:
//
//	API call ──request──▶ ┌──────┐ ──publish──▶ sender goroutine ──▶ roomnet.Network.Publish
//	roomnet.Network.Next ─reader─▶ │ loop │ ──events───▶ watchers (bounded buffers)
//	Fetch results ───────▶ │      │ ──fetch────▶ fetch goroutines (≤ 8) ──▶ roomnet.Network.Fetch
//	Clock timer ─────────▶ └──────┘ ──view─────▶ atomic snapshot ◀── Get/State/States/Members, Serve
//
// Reads never go through the loop: after every input the loop publishes an
// immutable snapshot (an atomic pointer; unchanged peers' maps are shared
// between snapshots), so Get, State, States, Members, Status and the answer
// to other peers' Fetch cost a pointer load and a copy, from any goroutine.
// Writes (Set, Delete, Leave, Rejoin) are requests answered by the loop, so
// limit errors are returned synchronously and a Get right after Set sees
// the new value.
//
// The loop, the network reader, the sender and the fetchers all belong to
// the Room: Close (or the end of the linger) cancels them, closes the
// network and waits for each of them before Done is closed.
//
// # Protocol behaviour
//
// Each incarnation of the local peer in a room has an epoch: unix
// milliseconds at join, and strictly greater than any epoch this process
// used before. The presence store orders entries by (epoch, counter), so a
// restarted peer's state replaces its old state at once.
//
//   - Join: publish a hello (identity, epoch, full own state). On every
//     roomnet.EventPeerUp the room fetches that peer's state over a direct stream
//     (roomnet.Network.Fetch) and treats the reply as a heartbeat: a newcomer sees
//     each directly connected member without depending on any publish
//     arriving. A failed fetch of a peer that is not a member yet is
//     retried after 100, 200 and 400ms (it may have subscribed a moment
//     before its room could answer). On the first PeerUp after joining the
//     hello is published
//     again (after PublishInterval, so a burst of connections costs one),
//     for members that are not directly connected.
//   - Relayed join snapshot: a member keeps, per remote member, that
//     member's own signed messages as received (roomnet.Event.Signed): its
//     latest hello or heartbeat, and each later delta that still holds the
//     newest value of some key. Its Fetch reply (roomnet.Served) carries them; the
//     network verifies each against its author's signature, and the
//     newcomer applies them as messages of their authors. So a newcomer
//     connected to one member sees every member that member knows, with
//     identity and newest state, after one round trip, and no member can
//     forge or alter another's state on the way. Relayed members are not
//     answered or fetched; relayed messages from a probe are ignored. A
//     relay proves what its author said, not that it is alive, so its
//     weight as a sign of life is bounded by its age: a member relays only
//     members it heard from directly less than relayMaxAge ago
//     (1.2×HeartbeatInterval, at most Timeout/2) and none it is about to
//     drop; a relayed new member counts as heard relayMaxAge before
//     receipt (and is not relayed on), a relayed known member as not heard
//     at all. A relay never readmits an incarnation the receiver dropped
//     (probe, suspicion, timeout or goodbye). So a crashed member is gone
//     everywhere within Timeout of its last message, however many
//     newcomers relay it to each other.
//   - Answering newcomers: a hello carries the digest of the members its
//     author knows (roomnet.Message.View, roomnet.ViewDigest). A member answers a hello
//     whose digest differs from its own, and a heartbeat or delta that
//     reveals a new peer (or a new epoch of a known one), with an early
//     heartbeat after a random 0–50ms, at most one per PublishInterval;
//     it reaches the newcomer and the newcomer's other neighbours. The
//     answer is sent once more 600ms (+0–50ms) later: a newcomer connected
//     to a single member gets the other members' answers only through that
//     member's GossipSub mesh, which it joins at a GossipSub heartbeat
//     (250ms) after connecting, and answers relayed before then never
//     reach it. The repeat is coalesced like the answer: a newcomer
//     answered while a repeat is pending moves it to 600ms after its own
//     answer, so one repeat covers every newcomer answered before it; any
//     hello or heartbeat published at most PublishInterval before the
//     repeat is due counts as the repeat. A newcomer's second hello goes
//     out after its join-snapshot fetch, so in a settled room its digest
//     matches everyone's and nobody answers (a join costs O(N) messages);
//     answers happen when views differ: a room whose members all start at
//     once, a slow fetch, or a hello at join that reached members because
//     the newcomer was already connected to them.
//   - Suspicion: a member whose probe of another failed publishes a
//     suspect (roomnet.KindSuspect) naming it and its epoch. Members hold that
//     incarnation for a refutation window (500ms, at most Timeout/2) and
//     then drop it with ReasonTimeout unless they heard from it; the
//     subject refutes a suspect about itself with an early heartbeat
//     marked Refute (the refutation). Only members may accuse. So a crash
//     is seen everywhere about 500ms after the victim's connections
//     close, not after Timeout. A suspect is void (suspicion.go) when it
//     arrives within 30s after a refutation by that incarnation (whatever
//     the order in which the suspect and the refutation travelled), or
//     comes from an accuser one of whose accusations was refuted in the
//     last 30s; one accuser holds at most 4 open suspicions, and each
//     subject at most one. A member that answers every suspect it
//     receives is therefore never dropped by one.
//   - Membership: a peer becomes a member on its first valid hello,
//     heartbeat, delta or fetch reply. A delta carries no identity: its
//     author is admitted with an empty Name, and the room fetches its
//     identity directly (MemberUpdated follows when it arrives).
//     Broadcasts are delivered from any verified author whose incarnation
//     is not stale, also from a peer that has not said hello yet (its
//     Event.Member then has only the peer ID: a Broadcast right after
//     Join often arrives before its author's hello); they do not make
//     anyone a member (they carry no identity) and count as a member's
//     sign of life. Apps that want members only check Members().
//   - Heartbeats every HeartbeatInterval (±10%) carry identity, epoch and
//     the full own state, so lost deltas heal within one interval.
//   - Local writes are coalesced: a write publishes a delta at once if the
//     pacing allows, else as soon as it does, with whatever is latest then
//     (the trailing edge is always sent). The pacing is a token bucket of
//     rate 1/PublishInterval and capacity 2 with a minimum gap of
//     PublishInterval/2: one delta per PublishInterval in a sustained
//     burst, at most 2 + T/PublishInterval in any span T, and an app that
//     writes at about 1/PublishInterval (with jitter) is never held back a
//     whole window, as a strict one-per-window rule would do. A burst of
//     1000 writes at one instant costs two publishes (now and
//     PublishInterval/2 later).
//   - Leave (remote): the member is dropped at once (MemberLeft with
//     ReasonLeft, its presence removed with cause leave). A goodbye from an
//     older epoch than the member's current one is ignored. A goodbye is
//     final for its epoch: no message of that epoch, after it, before it
//     in the same flush (see the readmission hold under No ghosts), or
//     relayed, makes the peer join again.
//   - Silence: a member not heard from for Timeout (on the local clock) is
//     dropped with ReasonTimeout, exactly at the deadline.
//   - roomnet.EventPeerDown is only a hint: the room probes the peer (Fetch,
//     timeout min(1s, Timeout)). A probe that fails after an roomnet.EventPeerUp of
//     the same peer (a restarted peer whose old connection closed under
//     the probe) is started again. If the probe fails, the peer is held
//     for the restart grace (500ms, at most Timeout/4: listed, presence
//     kept) and then dropped with ReasonTimeout, unless it was heard from
//     more than min(250ms, Timeout/4) after the hint (messages right after
//     the hint were most likely queued before it), or a new epoch of it or
//     a successful fetch arrives within the grace. The suspect goes out at
//     once. A killed peer whose connections close is gone everywhere about
//     500ms after the probe fails (at most about 1.5s). A frozen peer
//     whose connections stay open (SIGSTOP) gets a PeerDown too: the
//     gossip layer checks peers it heard nothing from for 750ms and
//     reports one that misses two checks (docs/PROTOCOL.md 2.8a), so it
//     is dropped in about 4s (measured 3.75s, default Timeout). Otherwise
//     within Timeout after its last heartbeat.
//   - Restart (same peer, new epoch): one member; its new state replaces
//     the old at once; MemberUpdated if its name or meta changed. That
//     holds while the old incarnation is still a member when the new one
//     arrives: the old process still running, frozen (its connection open:
//     the gossip layer detects the stale connection within a second and
//     reconnects), or crashed less than the restart grace (500ms) before a
//     member's probe of it failed (at a member not connected to it: less
//     than the 500ms refutation window after the suspect). A pair
//     (MemberLeft with ReasonTimeout, then MemberJoined) happens exactly
//     when the new epoch arrives after that: a crashed peer restarted more
//     than about half a second after its connections closed, or after it
//     was silent for Timeout. A peer that said goodbye and starts again is
//     a leave and a join.
//   - No ghosts: the room remembers the epoch of every removed member (for
//     max(2×Timeout, 3min), at most 4096 peers). Messages of an older epoch,
//     or of the epoch that said goodbye, never bring it back; a newer epoch
//     does. Relayed copies never bring back an incarnation that was
//     dropped. After a silence timeout, fresh messages of the same epoch
//     do bring it back (a healed partition), after a readmission hold of
//     one HeartbeatInterval (at most 1s) from the first of them, during
//     which its goodbye cancels the readmission: a connection that survived
//     a short cut flushes a leaver's last heartbeats and then its goodbye
//     (not in one instant: TCP resends in bursts).
//     A direct fetch reply readmits at once. After a failed probe,
//     messages of the same epoch that arrive within min(1s, Timeout) may
//     be in flight from a dead peer: they trigger a new probe instead, and
//     only its success readmits the peer.
//
// # Lifecycle
//
// Status is Joined after New. Leave publishes the goodbye (and waits until
// it is handed to the network, bounded by its context), stops heartbeats,
// clears the local presence (PresenceChanged with cause leave and
// MemberLeft for self), and moves to Left: the room keeps receiving for
// Config.Linger, then it is destroyed: status Closed, the network closed,
// RoomDestroyed delivered, Done closed: on every path that destroys the
// room, the network is closed before RoomDestroyed is delivered, so a
// watcher that sees it may join the same room on the same network at
// once. Rejoin during the linger starts a new epoch, publishes a hello
// and moves back to Joined (MemberJoined for self). Close destroys the room at once without a goodbye; it is
// idempotent and waits for every goroutine of the room. If the network
// ends by itself, the room is destroyed as by Close.
//
// # Events
//
// Events are forward-only: read the state first (Members, States), then
// Watch, then call Next. All events of a room come from its loop, in
// order, and the readable state is updated before the events describing
// it are delivered. The local peer's own join in New is not an event (no
// watcher exists yet); Leave emits PresenceChanged (cause leave) and
// MemberLeft for self, Rejoin emits MemberJoined for self. For a member that joins, MemberJoined comes before the
// PresenceChanged carrying its state; for a member that goes, the
// PresenceChanged removing its state comes before MemberLeft.
//
// Each Watcher has a bounded buffer (256 events by default). The room never
// waits for a watcher: when the buffer is full, newer events are dropped
// and counted, and the consumer receives one Lagged event (with Dropped
// set) at the place of the gap, after the events buffered before it. On
// Lagged, re-read the state. RoomDestroyed is never dropped and is always
// the last event; then Next returns ErrClosed.
//
// # Errors
//
// ErrClosed ("room: closed") after the room is destroyed; ErrNotJoined
// ("room: not joined") for writes while Left; ErrInvalidID from
// ValidateID; limit errors of the presence store wrapped with the key
// (errors.Is(err, ephemeral.ErrValueTooLarge) and so on). Stale or
// duplicate network input is not an error: it is ignored.
//
// # Time
//
// The room reads time only through a Clock (the real one unless WithClock
// says otherwise). Timeouts of network calls (Fetch, the drain of the
// final publishes) use context deadlines.
package room
