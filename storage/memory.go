package storage

import (
	"context"
	"sort"
	"sync"
)

// Memory is an in-memory adapter: the zero value is ready to use, nothing
// survives the process. Safe for concurrent use.
type Memory struct {
	mu     sync.Mutex
	m      map[string][]byte // encoded key → data
	closed bool
}

var (
	_ Adapter = (*Memory)(nil)
	_ Batcher = (*Memory)(nil)
)

// NewMemory returns an empty in-memory adapter.
func NewMemory() *Memory { return &Memory{} }

func (s *Memory) lock() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.m == nil {
		s.m = make(map[string][]byte)
	}
	return nil
}

// Load implements Adapter.
func (s *Memory) Load(_ context.Context, key Key) ([]byte, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	if err := s.lock(); err != nil {
		return nil, false, err
	}
	defer s.mu.Unlock()
	v, ok := s.m[string(EncodeKey(key))]
	if !ok {
		return nil, false, nil
	}
	return append([]byte(nil), v...), true, nil
}

// Save implements Adapter.
func (s *Memory) Save(ctx context.Context, key Key, data []byte) error {
	return s.Batch(ctx, []Chunk{{Key: key, Data: data}}, nil)
}

// Remove implements Adapter.
func (s *Memory) Remove(ctx context.Context, key Key) error {
	return s.Batch(ctx, nil, []Key{key})
}

// Batch implements Batcher: removes first, then saves, under one lock.
func (s *Memory) Batch(_ context.Context, save []Chunk, remove []Key) error {
	if err := checkBatch(save, remove); err != nil {
		return err
	}
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, k := range remove {
		delete(s.m, string(EncodeKey(k)))
	}
	for _, c := range save {
		s.m[string(EncodeKey(c.Key))] = append([]byte(nil), c.Data...)
	}
	return nil
}

// LoadRange implements Adapter.
func (s *Memory) LoadRange(_ context.Context, prefix Key) ([]Chunk, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	p := EncodeKey(prefix)
	var keys []string
	for k := range s.m {
		if hasKeyPrefix([]byte(k), p) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([]Chunk, 0, len(keys))
	for _, k := range keys {
		key, err := DecodeKey([]byte(k))
		if err != nil {
			return nil, err
		}
		out = append(out, Chunk{Key: key, Data: append([]byte(nil), s.m[k]...)})
	}
	return out, nil
}

// RemoveRange implements Adapter.
func (s *Memory) RemoveRange(_ context.Context, prefix Key) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	p := EncodeKey(prefix)
	for k := range s.m {
		if hasKeyPrefix([]byte(k), p) {
			delete(s.m, k)
		}
	}
	return nil
}

// Close implements Adapter; the data is dropped. Idempotent.
func (s *Memory) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed, s.m = true, nil
	return nil
}
