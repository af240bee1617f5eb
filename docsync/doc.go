// Package docsync syncs documents (package doc) between peers over libp2p:
// pairwise Automerge sync on one ordered stream per peer and direction
// (ProtocolID, length-prefixed frames: Hello, Have, Request, Sync,
// Unavailable, Snapshot, Delete), and small head announcements
// (Announcement: a document's AnnounceDigest and heads, never its ID) on
// one GossipSub topic per repo namespace, AnnounceTopic, when
// Config.PubSub is set (a repo.Repo sets it unless told not to). An
// announcement of heads a peer lacks after announceGrace nudges its session
// with the announcer, or dials the announcer. docs/PROTOCOL.md part 4 is
// the specification.
package docsync
