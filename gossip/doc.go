// Package gossip carries Convene rooms over GossipSub: one topic per room
// ("/convene/room/1/<roomID>"), a compact versioned envelope for room
// messages, a per-(forwarder, author) rate pre-check before pubsub's
// validation queue (precheck.go), a topic validator at every relay
// (decoding, size, author binding, the envelope's tie to its presence
// state, rate limits), bans of authors of invalid messages with doubling
// durations (bans.go) on top of GossipSub peer scoring, a direct-stream
// Fetch protocol for a peer's current state, and a
// direct-stream goodbye protocol (LeaveProtocol) so that a leave published
// right before closing reaches every directly connected peer.
//
// A Router owns the GossipSub instance of one libp2p host; Router.Join
// returns a Topic, which implements roomnet.Network. The wire format and every
// GossipSub parameter choice are documented in docs/PROTOCOL.md.
//
// Router and Topic stop like net/http's Server: Shutdown(ctx) waits,
// bounded by ctx, until own messages already published (a goodbye) are
// routed (Topic) and written to the peers' streams (Router), then closes;
// Close closes at once. The first call of either decides the result that
// every later call of either returns (docs/PROTOCOL.md 2.10).
//
// Logging goes to the go-log subsystems "convene/gossip" and "pubsub" unless
// Config.Logger is set.
package gossip
