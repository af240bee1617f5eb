package storage

import (
	"context"
	"errors"
)

// Errors returned by adapters.
var (
	// ErrClosed is returned by every method of a closed adapter.
	ErrClosed = errors.New("storage: closed")
	// ErrLocked is returned by OpenBolt when another process (or another
	// open in this one) holds the store's file lock.
	ErrLocked = errors.New("storage: store is locked by another process")
	// ErrBadKey is returned for an empty key or an undecodable stored key.
	ErrBadKey = errors.New("storage: bad key")
)

// Key names one stored value: a path of strings, such as
// {docID, "snapshot", hash}. Parts may hold any bytes; the empty key is
// refused. A key is a prefix of another when its parts are the other's
// first parts (LoadRange, RemoveRange).
type Key []string

// HasPrefix reports whether prefix is a prefix of k (part by part).
func (k Key) HasPrefix(prefix Key) bool {
	if len(prefix) > len(k) {
		return false
	}
	for i, p := range prefix {
		if k[i] != p {
			return false
		}
	}
	return true
}

// Chunk is one stored key and its value.
type Chunk struct {
	Key  Key
	Data []byte
}

// Adapter stores documents' chunks. It is the automerge-repo storage
// adapter's shape: values are opaque bytes under string-path keys. An
// adapter sees only what the document layer gives it (document chunks, the
// document index, tombstones), never room or presence data.
//
// Implementations are safe for concurrent use. A Save or Remove that has
// returned nil is durable as far as the adapter promises (Bolt: on disk,
// fsynced; Memory: until the process ends). Data passed to Save is not
// retained; data returned is the caller's.
type Adapter interface {
	// Load returns the value under key, or nil, false if there is none.
	Load(ctx context.Context, key Key) ([]byte, bool, error)
	// Save stores data under key, replacing any value.
	Save(ctx context.Context, key Key, data []byte) error
	// Remove deletes key; removing a missing key is not an error.
	Remove(ctx context.Context, key Key) error
	// LoadRange returns every chunk whose key has this prefix, in the
	// order of their encoded keys (EncodeKey). An empty prefix means every
	// chunk.
	LoadRange(ctx context.Context, prefix Key) ([]Chunk, error)
	// RemoveRange deletes every chunk whose key has this prefix.
	RemoveRange(ctx context.Context, prefix Key) error
	// Close releases the adapter. It is idempotent.
	Close() error
}

// Batcher is implemented by adapters that can apply several saves and
// removes atomically (Bolt: one transaction, Memory: one lock). The document
// layer compacts through it when available: a crash then leaves either the
// old chunks or the new snapshot, never both or neither. Without it,
// compaction saves first and removes after, which is also safe (chunks are
// content-addressed; a crash in between leaves redundant chunks that load
// de-duplicates).
type Batcher interface {
	Batch(ctx context.Context, save []Chunk, remove []Key) error
}

// checkBatch checks every key of a Batch before anything is applied.
func checkBatch(save []Chunk, remove []Key) error {
	for _, c := range save {
		if err := checkKey(c.Key); err != nil {
			return err
		}
	}
	for _, k := range remove {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	return nil
}

func checkKey(k Key) error {
	if len(k) == 0 {
		return ErrBadKey
	}
	return nil
}
