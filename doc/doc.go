// Package doc is one persistent CRDT document of Convene: the Handle an
// app holds, over an Automerge document (github.com/automerge/automerge-go,
// behind a small internal engine interface), saved through a
// storage.Adapter.
//
// A handle is opened by ID (repo.Repo.Doc does it for an app): loaded from
// storage if it has the document, else created, with Options.Init as the
// deterministic genesis that every peer shares. Writes run in Change,
// under the handle's lock, and commit as one change with one Changed event;
// reads run in Read (or Get, Value) under the same lock.
//
//	h, err := doc.Open(ctx, "chat-general-messages", doc.Options{
//		Storage: store,
//		Init: func(tx *doc.Tx) error { return tx.Set(doc.Path{"messages"}, []any{}) },
//	})
//	err = h.Change(func(tx *doc.Tx) error {
//		return tx.Append(doc.Path{"messages"}, map[string]any{"from": "ana", "text": "hi"})
//	})
//	msgs, _, err := h.Get(doc.Path{"messages"})
//	w := h.Watch() // forward-only: Changed{Origin, Before, After}
//	err = h.Flush(ctx) // durable now (saves are otherwise debounced)
//
// Typed helpers (Tx.Get, Set, Delete, Append, Splice, Increment, Len)
// cover JSON-like data, collaborative Text and Counters; Tx.Automerge
// reaches the whole automerge-go API. Saving follows automerge-repo:
// snapshot and incremental chunks under content-addressed keys, compacted
// into one snapshot once the incrementals outgrow it (docs/STORAGE.md says
// what is durable when).
//
// The pinned automerge-go (Rust automerge 0.5.0) has bugs this package
// works around: ApplyChanges applies each change alone (Doc.Apply of one
// change applies its whole batch); saves use the changes since the saved
// heads (SaveIncremental after Load re-emits everything); Merge never
// holds two documents' locks (Doc.Merge can deadlock); Options.Init makes
// shared containers (two peers creating "the same" Text make two). The
// version's sync bugs belong to sync between peers: SyncState (one per
// peer and document) is the seam package docsync drives, and CheckStall
// is the cure of the stalled sync state (automerge #702); the huge first
// sync is avoided by docsync sending a snapshot first.
// Changes whose dependencies are missing are refused by this version, not
// queued: a peer must send dependencies first.
//
// This package needs cgo (automerge-go ships prebuilt static libraries for
// linux and darwin, amd64 and arm64). Rooms and presence (room, gossip,
// ephemeral, p2p) do not import it and build without cgo.
package doc
