package doc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/convene-p2p/convene/storage"
)

// Chunk kinds under a document's key prefix {"doc", id}.
const (
	kindSnapshot    = "snapshot"
	kindIncremental = "incremental"
)

// compactBelow: a snapshot smaller than this is rewritten on every save
// instead of growing incrementals (automerge-repo's rule).
const compactBelow = 1024

func docPrefix(id string) storage.Key { return storage.Key{"doc", id} }

type chunk struct {
	key  storage.Key
	size int
}

// load reads the document from storage; found is false when storage has
// no chunk of it. h.mu is not needed (the handle is not shared yet).
func (h *Handle) load(ctx context.Context) (found bool, err error) {
	if h.opts.Storage == nil {
		return false, nil
	}
	cs, err := h.opts.Storage.LoadRange(ctx, docPrefix(h.id))
	if err != nil {
		return false, fmt.Errorf("doc: load %q: %w", h.id, err)
	}
	// Snapshots first, then incrementals (which may depend on them).
	var snaps, incs []storage.Chunk
	total := 0
	for _, c := range cs {
		if len(c.Key) != 4 {
			continue
		}
		switch c.Key[2] {
		case kindSnapshot:
			snaps = append(snaps, c)
		case kindIncremental:
			incs = append(incs, c)
		default:
			continue
		}
		total += len(c.Data)
	}
	ordered := append(snaps, incs...)
	if len(ordered) == 0 {
		return false, nil
	}
	if total > h.opts.MaxSize {
		return false, fmt.Errorf("%w: %q has %d bytes in storage > %d", ErrTooLarge, h.id, total, h.opts.MaxSize)
	}
	var all bytes.Buffer
	for _, c := range ordered {
		all.Write(c.Data)
	}
	kept := ordered
	eng, err := loadAM(all.Bytes())
	if err != nil {
		// One damaged chunk must not lose the document: load the chunks
		// one by one, skipping those that do not load.
		h.opts.Logger.Warn("document does not load whole; loading chunk by chunk", "doc", h.id, "err", err)
		eng, kept = loadEach(ordered, func(c storage.Chunk, err error) {
			h.opts.Logger.Warn("skipping a chunk that does not load", "doc", h.id, "key", c.Key, "err", err)
		})
		h.skipped = len(ordered) - len(kept)
	}
	// Compaction replaces only the chunks that loaded: a skipped chunk stays
	// in storage (it may hold changes no other chunk has).
	for _, c := range kept {
		h.chunks = append(h.chunks, chunk{key: c.Key, size: len(c.Data)})
		if c.Key[2] == kindSnapshot {
			h.snap += len(c.Data)
		} else {
			h.incr += len(c.Data)
		}
	}
	h.eng = eng
	h.saved = eng.heads()
	h.size = total
	return true, nil
}

// scheduleSave arms the debounced save; h.mu is held.
func (h *Handle) scheduleSave() {
	if h.opts.Storage == nil || h.timer != nil || h.closed {
		return
	}
	h.bg.Add(1)
	h.timer = time.AfterFunc(h.opts.SaveDelay, func() {
		defer h.bg.Done()
		h.mu.Lock()
		h.timer = nil
		h.mu.Unlock()
		if err := h.flush(context.Background()); err != nil {
			h.opts.Logger.Warn("debounced save failed; Flush retries", "doc", h.id, "err", err)
		}
	})
}

// Flush writes every change made so far to storage and returns once the
// adapter has them (Bolt: fsynced). It returns the error of a failed save,
// including a debounced one since the last Flush.
func (h *Handle) Flush(ctx context.Context) error {
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return h.flush(ctx)
}

func (h *Handle) flush(ctx context.Context) error {
	st := h.opts.Storage
	if st == nil {
		return nil
	}
	h.saveMu.Lock()
	defer h.saveMu.Unlock()
	h.mu.Lock()
	heads := h.eng.heads()
	if heads.Equal(h.saved) {
		h.mu.Unlock()
		return nil
	}
	var (
		data     []byte
		kind     string
		err      error
		snapshot = len(h.chunks) == 0 || h.snap < compactBelow
	)
	if !snapshot {
		data, err = h.eng.saveSince(h.saved)
		if err == nil && h.incr+len(data) >= h.snap {
			snapshot = true
		}
	}
	if snapshot {
		data, kind = h.eng.save(), kindSnapshot
		h.size = len(data)
	} else {
		kind = kindIncremental
	}
	h.mu.Unlock()
	if err != nil {
		return fmt.Errorf("doc: save %q: %w", h.id, err)
	}
	var name string
	if kind == kindSnapshot {
		name = heads.digest()
	} else {
		sum := sha256.Sum256(data)
		name = hex.EncodeToString(sum[:])
	}
	key := storage.Key{"doc", h.id, kind, name}
	if kind == kindIncremental {
		err = st.Save(ctx, key, data)
		if err == nil {
			h.chunks = append(h.chunks, chunk{key: key, size: len(data)})
			h.incr += len(data)
		}
	} else {
		var old []storage.Key
		for _, c := range h.chunks {
			if !equalKey(c.key, key) {
				old = append(old, c.key)
			}
		}
		err = compact(ctx, st, storage.Chunk{Key: key, Data: data}, old)
		if err == nil {
			h.chunks = []chunk{{key: key, size: len(data)}}
			h.snap, h.incr = len(data), 0
		}
	}
	if err != nil {
		err = fmt.Errorf("doc: save %q: %w", h.id, err)
		h.errMu.Lock()
		h.saveErr = err
		h.errMu.Unlock()
		return err
	}
	h.saved = heads
	h.errMu.Lock()
	h.saveErr = nil
	h.errMu.Unlock()
	return nil
}

// compact writes a snapshot and removes the chunks it replaces: in one
// transaction when the adapter can, else save first, then remove (a crash
// in between leaves redundant chunks, which load de-duplicates).
func compact(ctx context.Context, st storage.Adapter, snap storage.Chunk, old []storage.Key) error {
	if b, ok := st.(storage.Batcher); ok {
		return b.Batch(ctx, []storage.Chunk{snap}, old)
	}
	if err := st.Save(ctx, snap.Key, snap.Data); err != nil {
		return err
	}
	var errs []error
	for _, k := range old {
		errs = append(errs, st.Remove(ctx, k))
	}
	return errors.Join(errs...)
}

func equalKey(a, b storage.Key) bool {
	return len(a) == len(b) && a.HasPrefix(b)
}

// loadEach loads chunks one at a time (snapshots first): a chunk is kept
// when the chunks kept so far and it load together (automerge-go's
// LoadIncremental reports no error for garbage, so each step is checked
// with a whole Load). It returns the document of the kept chunks and
// those chunks. A chunk is skipped when it is damaged, and also when it is
// whole but its changes depend on a skipped chunk's (automerge-go 0.5
// refuses changes whose dependencies are missing). It costs one Load per
// chunk, only on this path.
func loadEach(chunks []storage.Chunk, skip func(storage.Chunk, error)) (*amEngine, []storage.Chunk) {
	var good []byte
	var kept []storage.Chunk
	for _, c := range chunks {
		try := append(append([]byte(nil), good...), c.Data...)
		if _, err := loadAM(try); err != nil {
			skip(c, err)
			continue
		}
		good = try
		kept = append(kept, c)
	}
	eng := newAM()
	if len(good) > 0 {
		if e, err := loadAM(good); err == nil {
			eng = e
		}
	}
	return eng, kept
}
