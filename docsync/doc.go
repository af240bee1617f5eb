// Package docsync syncs documents (package doc) between peers over libp2p:
// pairwise Automerge sync on one ordered stream per peer and direction
// (ProtocolID, length-prefixed frames: Hello, Have, Request, Sync,
// Unavailable, Snapshot, Delete), and small head announcements
// (Announcement: a document's Digest and heads, never its ID) on one
// GossipSub topic per repo namespace. docs/PROTOCOL.md part 4 is the
// specification.
package docsync
