// Package room runs one Convene room: who is here, what each member's
// presence is, and what happens when peers join, leave, crash or restart.
//
// Most apps get a *Room from repo.JoinRoom. New creates one over any
// roomnet.Network (the gossip package implements it on a GossipSub topic;
// this package has no libp2p import). The user holds the *Room: Set/Delete
// the local presence, read anyone's with Get/State/States, list Members,
// Broadcast, Watch events, and finally Leave (goodbye, then a linger),
// Shutdown (goodbye, then destroyed) or Close (destroyed at once). All
// methods are safe for concurrent use.
//
// The protocol behind it, with the reasons and the measurements, is
// docs/PROTOCOL.md, Part 1; this comment is what a user of the package can
// rely on.
//
// # Reads and writes
//
// Reads (Get, GetJSON, State, States, Members, Status) are cheap and never
// wait for the room: they read the latest immutable snapshot. Writes (Set,
// SetTTL, Delete, Leave, Rejoin) are answered by the room's loop, so limit
// errors are returned at the call and a Get right after Set sees the new
// value. Only the local peer writes its own presence; a remote member's
// presence changes only through that member's own signed messages.
//
// Local writes are coalesced: one delta per Config.PublishInterval in a
// sustained burst (at most 2 + T/PublishInterval in any span T), and the
// last value written is always sent (the trailing edge). An app that
// writes at about 1/PublishInterval has each write sent at once.
//
// # Membership
//
//   - The local peer is a member from New until Leave.
//   - A remote peer becomes a member on its first hello, heartbeat, delta or
//     direct fetch reply; MemberJoined comes before the PresenceChanged
//     carrying its state. A peer known only from a delta has an empty Name
//     until its identity is fetched (MemberUpdated).
//   - A newcomer sees every member known to a peer it is connected to, with
//     its newest state, after one direct round trip to that peer, without
//     waiting for a heartbeat (each member's state is checked against that
//     member's own signature).
//   - A member that says goodbye is dropped at once (MemberLeft, ReasonLeft).
//     A member whose connections close (a crash) is dropped everywhere about
//     half a second later (ReasonTimeout); one that is just silent, after
//     Config.Timeout on the local clock. A frozen peer whose connections stay
//     open is dropped in a few seconds.
//   - A peer that restarts with the same key (a new epoch) is one member: its
//     new state replaces the old at once (MemberUpdated if its name or meta
//     changed). Only a restart that comes after the old incarnation was
//     already dropped is a MemberLeft and a MemberJoined.
//   - No ghosts: old or replayed messages of an incarnation that left or was
//     dropped never bring it back; a newer epoch does, and so do fresh
//     messages after a healed partition.
//   - Broadcasts are delivered from any verified author, also one that is
//     not a member yet (Event.Member then has only the peer ID); they make
//     nobody a member. Apps that want members only check Members().
//   - Name and Meta are self-asserted display data; only the peer ID is
//     verified (it is the message signer).
//
// # Lifecycle
//
// Status is Joined after New. Leave publishes the goodbye (and waits until
// it is handed to the network, bounded by its context), stops heartbeats,
// clears the local presence (PresenceChanged with cause leave and
// MemberLeft for self), and moves to Left: the room keeps receiving for
// Config.Linger, then it is destroyed: status Closed, the network closed,
// RoomDestroyed delivered, Done closed. On every path that destroys the
// room, the network is closed before RoomDestroyed is delivered, so a
// watcher that sees it may join the same room on the same network at
// once. Rejoin during the linger starts a new epoch, publishes a hello and
// moves back to Joined (MemberJoined for self).
//
// Shutdown and Close are net/http's pair. Shutdown(ctx) says goodbye as
// Leave does (unless the room has left already), waits until the network
// has it on its way, and destroys the room without a linger; every wait is
// bounded by ctx, and a ctx that ends first (or had ended) makes it Close
// plus ctx's error. Close destroys the room at once without a goodbye:
// others drop the local peer with reason timeout. Both wait for every
// goroutine of the room; the first call of either decides the result,
// which every later call of either returns. If the network ends by
// itself, the room is destroyed as by Close.
//
// # Events
//
// Events are forward-only: read the state first (Members, States), then
// Watch, then call Next. All events of a room come from its loop, in
// order, and the readable state is updated before the events describing
// it are delivered. The local peer's own join in New is not an event (no
// watcher exists yet); Leave emits PresenceChanged (cause leave) and
// MemberLeft for self, Rejoin emits MemberJoined for self. For a member
// that joins, MemberJoined comes before the PresenceChanged carrying its
// state; for a member that goes, the PresenceChanged removing its state
// comes before MemberLeft.
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
// The room reads time only through a Clock (the real one unless
// Config.Clock says otherwise). Timeouts of network calls (Fetch, the
// drain of the final publishes) use context deadlines.
package room
