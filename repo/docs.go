package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/storage"
)

// Errors of the document API.
var (
	// ErrDeleted is returned by Doc for a document deleted in this store:
	// its tombstone keeps it from coming back.
	ErrDeleted = errors.New("repo: document deleted")
)

// Storage keys the Repo writes beside the documents' own chunks
// ({"doc", id, ...}, written by package doc).
const (
	indexPrefix     = "index"     // {"index", id}: a document exists here
	tombstonePrefix = "tombstone" // {"tombstone", id}: JSON tombstone
)

// docs is the Repo's document state.
type docs struct {
	store storage.Adapter
	owned bool // the Repo made store (memory) and closes it
	opts  doc.Options

	mu      sync.Mutex
	closed  bool // closeDocs ran: nothing opens any more
	open    map[string]*docEntry
	index   map[string]bool // documents in storage or open (not deleted)
	deleted map[string]bool // tombstones
}

// docEntry is one open (or opening) document.
type docEntry struct {
	ready chan struct{} // closed once h or err is set
	h     *doc.Handle
	err   error
}

// Tombstone is what DeleteDoc stores for a document: it keeps incoming
// sync (issue 11) and Doc from bringing the document back. Peer is the
// local peer that deleted it; At is its wall clock (informative only).
type Tombstone struct {
	Doc  string    `json:"doc"`
	Peer string    `json:"peer"`
	At   time.Time `json:"at"`
}

// initDocs loads the document index and tombstones (New).
func (r *Repo) initDocs(ctx context.Context) error {
	d := &r.docs
	d.store = r.cfg.Storage
	if d.store == nil {
		d.store, d.owned = storage.NewMemory(), true
	}
	d.opts = r.cfg.Docs
	d.opts.Storage = d.store
	if d.opts.Logger == nil && r.cfg.docLogger != nil {
		d.opts.Logger = r.cfg.docLogger
	}
	d.open = make(map[string]*docEntry)
	d.index = make(map[string]bool)
	d.deleted = make(map[string]bool)
	idx, err := d.store.LoadRange(ctx, storage.Key{indexPrefix})
	if err != nil {
		return fmt.Errorf("repo: load the document index: %w", err)
	}
	for _, c := range idx {
		if len(c.Key) == 2 {
			d.index[c.Key[1]] = true
		}
	}
	tomb, err := d.store.LoadRange(ctx, storage.Key{tombstonePrefix})
	if err != nil {
		return fmt.Errorf("repo: load tombstones: %w", err)
	}
	for _, c := range tomb {
		if len(c.Key) == 2 {
			d.deleted[c.Key[1]] = true
			delete(d.index, c.Key[1])
		}
	}
	return nil
}

// Doc returns the handle of document id, opening it on first use: loaded
// from Config.Storage if it is there, else created (empty, or with
// Config.Docs.Init as its genesis). The first Doc call for an ID in this
// Repo emits DocCreated. Every call returns the same handle until
// DeleteDoc or Close; do not Close it yourself (the Repo does). A
// document deleted here returns ErrDeleted. ctx bounds the load.
func (r *Repo) Doc(ctx context.Context, id string) (*doc.Handle, error) {
	return r.DocWith(ctx, id, nil)
}

// DocWith is Doc with a schema for a new document: init runs as its
// deterministic genesis (doc.Options.Init), so that peers creating the
// same document with the same init share its containers. It is used only
// if this call opens the document and storage does not have it; nil means
// Config.Docs.Init.
func (r *Repo) DocWith(ctx context.Context, id string, init func(tx *doc.Tx) error) (*doc.Handle, error) {
	return r.openDoc(ctx, id, init, true)
}

// openDoc opens document id: with init as its genesis, or, if init is nil,
// Config.Docs.Init when defaultInit is set and no genesis at all when it
// is not (FindDoc: the document's first change comes from the peer that
// has it — a genesis of our own, even an empty one, would be a second
// first change by the same fixed actor, which Automerge refuses).
func (r *Repo) openDoc(ctx context.Context, id string, init func(tx *doc.Tx) error, defaultInit bool) (*doc.Handle, error) {
	if err := doc.ValidateID(id); err != nil {
		return nil, err
	}
	d := &r.docs
	for {
		r.mu.Lock()
		closed := r.closed
		r.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return nil, ErrClosed
		}
		if d.deleted[id] {
			d.mu.Unlock()
			return nil, fmt.Errorf("%w: %q", ErrDeleted, id)
		}
		e, ok := d.open[id]
		if ok {
			d.mu.Unlock()
			select {
			case <-e.ready:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if e.err != nil {
				continue // that open failed and was forgotten: try again
			}
			return e.h, nil
		}
		e = &docEntry{ready: make(chan struct{})}
		d.open[id] = e
		known := d.index[id]
		d.mu.Unlock()

		opts := d.opts
		if init != nil || !defaultInit {
			opts.Init = init
		}
		h, err := doc.Open(ctx, id, opts)
		if err == nil && !known {
			// Index first: a document whose chunks exist is listed after a
			// restart even if the process dies right after its first save.
			err = d.store.Save(ctx, storage.Key{indexPrefix, id}, nil)
			if err != nil {
				_ = h.Close(ctx)
			}
		}
		d.mu.Lock()
		if err != nil {
			delete(d.open, id)
			e.err = fmt.Errorf("repo: open document %q: %w", id, err)
		} else {
			e.h = h
			d.index[id] = true
		}
		d.mu.Unlock()
		close(e.ready)
		if err != nil {
			return nil, e.err
		}
		r.events.Publish(Event{Type: DocCreated, Doc: id})
		if r.sync != nil {
			r.sync.Track(h)
		}
		return h, nil
	}
}

// HasDoc reports whether document id exists here: open, or in storage.
func (r *Repo) HasDoc(id string) bool {
	r.docs.mu.Lock()
	defer r.docs.mu.Unlock()
	return r.docs.index[id]
}

// DocIDs lists the documents that exist here (open or in storage), sorted.
func (r *Repo) DocIDs() []string {
	r.docs.mu.Lock()
	ids := make([]string, 0, len(r.docs.index))
	for id := range r.docs.index {
		ids = append(ids, id)
	}
	r.docs.mu.Unlock()
	slices.Sort(ids)
	return ids
}

// DeleteDoc deletes document id here: its handle ends (watchers get
// doc.Deleted; later calls on it return doc.ErrClosed), its chunks are
// removed from storage and a tombstone is stored, so Doc returns
// ErrDeleted for it from now on, also after a restart, and sync will not
// bring it back. Deletion is local: other peers keep their copies. A
// document that exists here emits DocDestroyed; deleting an unknown or
// deleted ID only stores the tombstone.
func (r *Repo) DeleteDoc(ctx context.Context, id string) error {
	if err := doc.ValidateID(id); err != nil {
		return err
	}
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return ErrClosed
	}
	d := &r.docs
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	e := d.open[id]
	existed := d.index[id]
	// From here Doc refuses id.
	d.deleted[id] = true
	delete(d.index, id)
	delete(d.open, id)
	d.mu.Unlock()
	if r.sync != nil {
		r.sync.Untrack(id)
	}
	if e != nil {
		<-e.ready
		if e.h != nil {
			_ = e.h.Delete(ctx) // ErrClosed only if Close raced it
		}
	}
	ts, err := json.Marshal(Tombstone{Doc: id, Peer: r.self.Peer.String(), At: time.Now().UTC()})
	if err != nil {
		return err
	}
	// The tombstone first (with the index entry's removal, atomically where
	// the adapter can), then the chunks: a crash in between leaves a
	// tombstoned document whose leftover chunks are never loaded.
	save := []storage.Chunk{{Key: storage.Key{tombstonePrefix, id}, Data: ts}}
	remove := []storage.Key{{indexPrefix, id}}
	if b, ok := d.store.(storage.Batcher); ok {
		err = b.Batch(ctx, save, remove)
	} else {
		err = errors.Join(d.store.Save(ctx, save[0].Key, save[0].Data), d.store.Remove(ctx, remove[0]))
	}
	if err == nil {
		err = d.store.RemoveRange(ctx, storage.Key{"doc", id})
	}
	if err != nil {
		return fmt.Errorf("repo: delete document %q: %w", id, err)
	}
	if existed {
		r.events.Publish(Event{Type: DocDestroyed, Doc: id})
	}
	return nil
}

// FlushDocs makes every change of every open document durable (see
// doc.Handle.Flush), bounded by ctx.
func (r *Repo) FlushDocs(ctx context.Context) error {
	var errs []error
	for _, h := range r.openDocs() {
		if err := h.Flush(ctx); err != nil && !errors.Is(err, doc.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Repo) openDocs() []*doc.Handle {
	r.docs.mu.Lock()
	entries := make([]*docEntry, 0, len(r.docs.open))
	for _, e := range r.docs.open {
		entries = append(entries, e)
	}
	r.docs.mu.Unlock()
	var hs []*doc.Handle
	for _, e := range entries {
		<-e.ready
		if e.h != nil {
			hs = append(hs, e.h)
		}
	}
	return hs
}

// closeDocs saves and closes every open document, then the storage the
// Repo made (Close; r.closed is set, so no Doc call opens more).
func (r *Repo) closeDocs() error {
	ctx, cancel := context.WithTimeout(context.Background(), docCloseTimeout)
	defer cancel()
	r.docs.mu.Lock()
	r.docs.closed = true
	r.docs.mu.Unlock()
	var errs []error
	for _, h := range r.openDocs() {
		errs = append(errs, h.Close(ctx))
	}
	r.docs.mu.Lock()
	clear(r.docs.open)
	r.docs.mu.Unlock()
	if r.docs.owned {
		errs = append(errs, r.docs.store.Close())
	}
	return errors.Join(errs...)
}

// docCloseTimeout bounds the final saves of Close.
const docCloseTimeout = 10 * time.Second
