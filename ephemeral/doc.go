// Package ephemeral is Convene's presence store: for every peer of a room, a small set of
// keys and values (a cursor, a name, "typing"), merged last-writer-wins, forgotten when the
// peer goes quiet, and encoded compactly as deltas and snapshots.
//
// # A pure state machine
//
// A [Store] starts no goroutines, does no I/O and never reads a clock: every method that
// depends on time takes now as an argument. The room's loop owns the store, feeds it local
// writes, remote messages and ticks, and publishes what it encodes. A Store is not safe for
// concurrent use.
//
// # Only a peer writes its own entries
//
// [Store.Set], [Store.SetTTL] and [Store.Delete] write the local peer's keys only. Remote
// data goes through [Store.Apply] with the author the network authenticated (the GossipSub
// signer): a delta names no peer, so it can only describe its author, and a snapshot record
// for any peer other than the author is refused with [ErrForeignPeer] before anything is
// applied. Nobody can set, overwrite or delete another peer's presence. [Verify] runs the
// same checks without a store, for topic validators at relays. [Store.ApplyTrusted] skips
// the author check and exists only for data the caller produced or checked itself.
//
// # Two clocks
//
// The author's logical clock orders; the receiver's wall clock expires. Nothing orders or
// expires by a remote wall-clock time, so clock skew between peers changes nothing.
//
//   - Every write carries the author's [Version] (epoch, counter). The epoch is new, and
//     greater, every time the author starts or joins (Config.Epoch; unix milliseconds at
//     start work); the counter grows with every local write. A remote entry wins iff its
//     version is greater than what the store holds for that key. Duplicates and stale
//     updates are silently skipped. A delete is a tombstone with a version, so a late copy
//     of an older set cannot bring the key back.
//   - Data from a newer epoch replaces everything held from the older one at once: keys it
//     does not carry are removed (and reported), so a restarted peer leaves no stale key and
//     its fresh counter never loses to the old run's higher one. Data from an older epoch is
//     ignored.
//   - Liveness is measured on the receiver's clock: a remote peer expires [Config].Timeout
//     after it was last heard ([Store.Heard], or any Apply of its data). A key set with
//     [Store.SetTTL] vanishes TTL after the write at the author and TTL after receipt at
//     each receiver; the TTL travels as a duration (the time left when encoded), never as a
//     timestamp. [Store.Expire] applies both deadlines, inclusively (at now >= deadline), and
//     [Store.NextDeadline] says when to call it next.
//   - The store keeps every time it is given as wall-clock unix nanoseconds and compares
//     those: a monotonic clock reading in now (as from time.Now) is ignored, so a jump of
//     the wall clock moves the store's deadlines with it. Callers that need immunity to
//     wall-clock jumps pass a steady now (room's default clock passes the wall time at
//     process start plus the monotonic time elapsed since). Times are clamped to what unix
//     nanoseconds can hold (years 1678 to 2262), and the instant of the unix epoch counts
//     as one nanosecond later. [Store.NextDeadline] returns a time in UTC.
//
// # Deltas and snapshots
//
// [Store.EncodeDelta] returns the local keys changed since the previous call (tombstones
// included), or nil. A delta carries the author's epoch and, per key, the counter of its
// last write. [Store.EncodeSnapshot] returns whole live states: per peer its epoch, a
// counter C through which the record is complete (the author's own counter in its own
// snapshot), and every live key. Applying a snapshot also removes held keys of that epoch
// written at or before C that the record lacks: they were deleted. A late entry at or
// below C for a key the snapshot lacks is known to be stale. Both formats are versioned,
// canonical (one encoding per message) and documented byte by byte in docs/PROTOCOL.md;
// one cursor update (key "cursor", a 17-byte JSON value) is 35 bytes.
//
// # Changes
//
// Every mutating method returns what it did as [Change] values: which peer, which keys were
// Added, Updated (a new version replaced a value, even with equal bytes) or Removed, the
// [Cause] (local, remote, timeout, leave), and Gone when the peer itself was dropped.
//
// # Limits and bounded memory
//
// [Limits] bound key length, value size, live keys per peer and peers per store (self
// included). Local writes over a limit fail with [ErrKeyTooLong], [ErrValueTooLarge] or
// [ErrTooManyKeys]; Apply fails with [ErrTooManyKeys] when the result would hold too many
// live keys for a peer (a receiver that missed deletes; the author's next snapshot repairs
// it) and with [ErrTooManyPeers] for a new peer in a full store. Decoders check every count
// and length against the limits before allocating and fail with [ErrTooLarge] (also
// wrapping the limit error) or [ErrMalformed]; they never panic. A failed Apply changes
// nothing. Every peer of a room should use the same limits.
//
// Everything the store remembers is bounded too:
//
//   - Tombstones: at most MaxKeysPerPeer per peer. When a receiver forgets its oldest
//     tombstone it raises that peer's floor to the tombstone's counter, and treats entries
//     for keys it does not hold at or below the floor as stale. That may wrongly skip a key
//     delivered very late; the author's next snapshot brings it back. The author keeps a
//     tombstone only until the delta carrying it is encoded, and at most MaxKeysPerPeer of
//     them; a forgotten one is not sent, and receivers drop that key at the next snapshot.
//   - Departed peers: after [Store.Remove] with [CauseLeave] the store ignores the peer's
//     data from the epoch it left in (a late message cannot bring it back); after a timeout
//     it ignores the peer's data that carries nothing newer than what it dropped. It
//     remembers at most MaxPeers departed peers, oldest forgotten first.
package ephemeral
