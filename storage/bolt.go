package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var chunksBucket = []byte("chunks")

// BoltOptions configures OpenBolt. The zero value is usable.
type BoltOptions struct {
	// LockTimeout is how long OpenBolt waits for the file lock before it
	// returns ErrLocked. Zero means 500 ms.
	LockTimeout time.Duration
}

// Bolt is the durable adapter: one bbolt file holding every chunk, with an
// exclusive file lock (a second process opening it gets ErrLocked). Each
// Save, Remove, RemoveRange and Batch is one transaction, committed with
// fsync before it returns, so a kill -9 or power loss at any moment leaves
// the store as of the last returned call (bbolt's guarantee: the meta page
// is checksummed, partly written pages are ignored). Safe for concurrent
// use; bbolt serialises writers. The file never shrinks: freed pages are
// reused.
type Bolt struct {
	db   *bolt.DB
	path string
}

var (
	_ Adapter = (*Bolt)(nil)
	_ Batcher = (*Bolt)(nil)
)

// OpenBolt opens (creating if needed, with its directory) the bbolt store
// at path.
func OpenBolt(path string, opts BoltOptions) (*Bolt, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 500 * time.Millisecond
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s (waited %v for its file lock)", ErrLocked, path, opts.LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(chunksBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	return &Bolt{db: db, path: path}, nil
}

// Path is the store's file.
func (s *Bolt) Path() string { return s.path }

func (s *Bolt) view(fn func(b *bolt.Bucket) error) error {
	err := s.db.View(func(tx *bolt.Tx) error { return fn(tx.Bucket(chunksBucket)) })
	return boltErr(err)
}

func (s *Bolt) update(fn func(b *bolt.Bucket) error) error {
	err := s.db.Update(func(tx *bolt.Tx) error { return fn(tx.Bucket(chunksBucket)) })
	return boltErr(err)
}

func boltErr(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	if err != nil && !errors.Is(err, ErrBadKey) {
		return fmt.Errorf("storage: bolt: %w", err)
	}
	return err
}

// Load implements Adapter.
func (s *Bolt) Load(ctx context.Context, key Key) ([]byte, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	var out []byte
	var ok bool
	err := s.view(func(b *bolt.Bucket) error {
		v := b.Get(EncodeKey(key))
		if v != nil {
			out, ok = bytes.Clone(v), true
		}
		return nil
	})
	return out, ok, err
}

// Save implements Adapter.
func (s *Bolt) Save(ctx context.Context, key Key, data []byte) error {
	return s.Batch(ctx, []Chunk{{Key: key, Data: data}}, nil)
}

// Remove implements Adapter.
func (s *Bolt) Remove(ctx context.Context, key Key) error {
	return s.Batch(ctx, nil, []Key{key})
}

// Batch implements Batcher: one transaction, removes first, then saves.
func (s *Bolt) Batch(ctx context.Context, save []Chunk, remove []Key) error {
	if err := checkBatch(save, remove); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(b *bolt.Bucket) error {
		for _, k := range remove {
			if err := b.Delete(EncodeKey(k)); err != nil {
				return err
			}
		}
		for _, c := range save {
			data := c.Data
			if data == nil {
				data = []byte{}
			}
			if err := b.Put(EncodeKey(c.Key), data); err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadRange implements Adapter.
func (s *Bolt) LoadRange(ctx context.Context, prefix Key) ([]Chunk, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Chunk
	p := EncodeKey(prefix)
	err := s.view(func(b *bolt.Bucket) error {
		c := b.Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			key, err := DecodeKey(k)
			if err != nil {
				return err
			}
			out = append(out, Chunk{Key: key, Data: bytes.Clone(v)})
		}
		return nil
	})
	return out, err
}

// RemoveRange implements Adapter.
func (s *Bolt) RemoveRange(ctx context.Context, prefix Key) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := EncodeKey(prefix)
	return s.update(func(b *bolt.Bucket) error {
		c := b.Cursor()
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Seek(p) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// Close implements Adapter: it releases the file lock. Idempotent.
func (s *Bolt) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("storage: close %s: %w", s.path, err)
	}
	return nil
}
