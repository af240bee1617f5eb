// Package storage holds the storage adapters of Convene's documents: an
// Adapter interface in the automerge-repo shape (Load, Save, Remove,
// LoadRange, RemoveRange, Close over string-path Keys), an in-memory
// adapter (Memory, the default) and a durable one (Bolt: one bbolt file,
// fsynced transactions, an exclusive file lock).
//
// An adapter stores opaque bytes. What those bytes are is decided by the
// document layer (package doc): per document, one or more snapshot chunks
// {docID, "snapshot", sha256(heads)} and incremental chunks
// {docID, "incremental", sha256(bytes)}, compacted into one snapshot when
// the incrementals outgrow it (docs/STORAGE.md). Storage is room-agnostic:
// no room or presence data ever reaches an adapter.
//
//	s, err := storage.OpenBolt(filepath.Join(dir, "docs.bolt"), storage.BoltOptions{})
//	if errors.Is(err, storage.ErrLocked) { /* another process has it open */ }
//	defer s.Close()
//	r, err := repo.New(ctx, repo.Config{Storage: s})
package storage
