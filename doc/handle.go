package doc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	golog "github.com/ipfs/go-log/v2"

	"github.com/convene-p2p/convene/ephemeral"
	"github.com/convene-p2p/convene/internal/watch"
	"github.com/convene-p2p/convene/storage"
)

// Errors returned by handles.
var (
	ErrClosed   = errors.New("doc: closed")
	ErrBadPath  = errors.New("doc: bad path")
	ErrReadOnly = errors.New("doc: write in Read")
	ErrTooLarge = errors.New("doc: document over its size limit")
	ErrBadID    = errors.New("doc: bad document ID")
)

// DefaultMaxSize is Options.MaxSize's zero value: 16 MiB of encoded
// changes.
const DefaultMaxSize = 16 << 20

// MaxIDLen is the longest document ID, in bytes.
const MaxIDLen = 256

// ValidateID checks a document ID: 1 to MaxIDLen bytes.
func ValidateID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("%w: %d bytes (1 to %d)", ErrBadID, len(id), MaxIDLen)
	}
	return nil
}

// Options configures Open. The zero value is usable: memory only, no
// schema, the defaults below.
type Options struct {
	// Storage, if set, is where the document is loaded from and saved to
	// (chunks under the key prefix {"doc", id}). Nil: memory only.
	Storage storage.Adapter
	// Init, if set, creates the schema of a new document (one that storage
	// does not have) as its deterministic genesis change: a fixed actor
	// and no timestamp, so every peer that opens the document with the
	// same Init makes the very same change. Containers made there (a
	// Text, a list) are then one object on every peer, and concurrent
	// edits into them merge. Containers created later by a Change on two
	// peers at once are two objects, and one peer's edits are hidden
	// (Automerge's rule). Init must be deterministic; it runs once.
	Init func(tx *Tx) error
	// SaveDelay debounces saves: a change is written at most SaveDelay
	// after it was made (Flush writes at once). Zero means 100 ms.
	SaveDelay time.Duration
	// MaxSize bounds the document's encoded size (its snapshot plus the
	// changes since). Open refuses a stored document over it, and a
	// change that would take the document over it fails with ErrTooLarge
	// and is undone. Zero means DefaultMaxSize.
	MaxSize int
	// EventBuffer is how many events each Watcher buffers before it lags.
	// Zero means 256.
	EventBuffer int
	// Logger receives diagnostics (skipped chunks, failed debounced
	// saves). Nil means go-log's "convene/doc", quiet by default.
	Logger *slog.Logger
}

func (o *Options) validate() error {
	if o.SaveDelay < 0 || o.MaxSize < 0 || o.EventBuffer < 0 {
		return errors.New("doc: negative SaveDelay, MaxSize or EventBuffer")
	}
	if o.SaveDelay == 0 {
		o.SaveDelay = 100 * time.Millisecond
	}
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.EventBuffer == 0 {
		o.EventBuffer = 256
	}
	if o.Logger == nil {
		o.Logger = slog.New(golog.SlogHandler()).With("logger", "convene/doc")
	}
	return nil
}

// Origin says where a change came from: the local peer (the zero Origin)
// or a remote peer.
type Origin struct {
	Peer ephemeral.PeerID // empty for a local change
}

// Local reports whether the change was made here.
func (o Origin) Local() bool { return o.Peer == "" }

// String is "local" or the remote peer's ID.
func (o Origin) String() string {
	if o.Local() {
		return "local"
	}
	return o.Peer.String()
}

// EventType says what a handle event reports.
type EventType uint8

const (
	// Changed: the document moved from Before to After.
	Changed EventType = iota + 1
	// Lagged: this watcher fell behind and Dropped events were lost; read
	// the document again (Heads says where it is).
	Lagged
	// Deleted: the document was deleted (the last event).
	Deleted
)

// String names the event type.
func (t EventType) String() string {
	switch t {
	case Changed:
		return "changed"
	case Lagged:
		return "lagged"
	case Deleted:
		return "deleted"
	}
	return "unknown"
}

// Event is one handle event.
type Event struct {
	Type    EventType
	Doc     string
	Origin  Origin // Changed
	Before  Heads  // Changed
	After   Heads  // Changed
	Dropped int    // Lagged
}

// Handle is one open document. All reads and writes run under the
// handle's lock, so they are atomic with respect to each other; every
// committed change emits exactly one Changed event. Safe for concurrent
// use.
type Handle struct {
	id     string
	opts   Options
	events *watch.Broker[Event]

	mu      sync.Mutex
	eng     engine
	gen     uint64 // counts engine replacements (rollback): sync states made before are stale
	size    int    // encoded size: last snapshot + changes since
	closed  bool
	timer   *time.Timer // pending debounced save
	skipped int         // chunks that did not load (Open)

	saveMu  sync.Mutex // serialises saves; guards the fields below
	saved   Heads      // heads covered by storage
	chunks  []chunk    // this document's chunks in storage
	snap    int        // bytes in snapshot chunks
	incr    int        // bytes in incremental chunks
	bg      sync.WaitGroup
	errMu   sync.Mutex
	saveErr error // last failed debounced save, reported by Flush
}

// Open returns the handle of document id: loaded from opts.Storage if it
// has the document, else new (with opts.Init as its genesis). A stored
// document whose chunks do not load together is loaded chunk by chunk,
// skipping damaged ones (Skipped counts them). Close releases it.
func Open(ctx context.Context, id string, opts Options) (*Handle, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	h := &Handle{id: id, opts: opts}
	h.events = watch.New(opts.EventBuffer, func(n int) Event {
		return Event{Type: Lagged, Doc: id, Dropped: n}
	})
	found, err := h.load(ctx)
	if err != nil {
		return nil, err
	}
	if !found {
		h.eng = newAM()
		if opts.Init != nil {
			tx := &Tx{eng: h.eng}
			if err := h.eng.genesis(func() error { return opts.Init(tx) }); err != nil {
				return nil, fmt.Errorf("doc: %q: Init: %w", id, err)
			}
			h.size = len(h.eng.save())
			h.scheduleSave()
		}
	}
	return h, nil
}

// ID is the document's ID.
func (h *Handle) ID() string { return h.id }

// Skipped is how many stored chunks did not load when the handle opened
// (damaged chunks; their changes come back only from a peer that has them).
func (h *Handle) Skipped() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.skipped
}

// Heads is the document's current version.
func (h *Handle) Heads() Heads {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.eng == nil {
		return nil
	}
	return h.eng.heads()
}

// Size is the document's encoded size as MaxSize counts it.
func (h *Handle) Size() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.size
}

// Change runs fn under the handle's lock and commits what it wrote as one
// change, which emits one Changed event (origin local) and is saved within
// Options.SaveDelay. An fn that writes nothing is a no-op: no change, no
// event, nil. If fn returns an error, or the change would take the
// document over MaxSize (ErrTooLarge), what fn wrote is undone and the
// error returned.
func (h *Handle) Change(fn func(tx *Tx) error) error {
	return h.ChangeMsg("", fn)
}

// ChangeMsg is Change with a commit message stored in the change.
func (h *Handle) ChangeMsg(msg string, fn func(tx *Tx) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	before := h.eng.heads()
	tx := &Tx{eng: h.eng}
	err := fn(tx)
	tx.done = true
	if err != nil {
		return errors.Join(err, h.undo(before))
	}
	return h.commitLocked(msg, before, Origin{})
}

// undo drops what a failed edit wrote; h.mu is held. An edit that wrote
// nothing costs one empty commit; one that wrote costs a fork at before.
func (h *Handle) undo(before Heads) error {
	if n, err := h.eng.commit(""); err == nil && n == 0 {
		return nil
	}
	return h.rollback(before)
}

// commitLocked commits pending operations and reports them; h.mu is held.
func (h *Handle) commitLocked(msg string, before Heads, origin Origin) error {
	n, err := h.eng.commit(msg)
	if err != nil {
		return errors.Join(fmt.Errorf("doc: commit: %w", err), h.rollback(before))
	}
	if n == 0 {
		return nil
	}
	if h.size+n > h.opts.MaxSize {
		return errors.Join(fmt.Errorf("%w: %d + %d bytes > %d", ErrTooLarge, h.size, n, h.opts.MaxSize),
			h.rollback(before))
	}
	h.size += n
	h.changedLocked(origin, before)
	return nil
}

// changedLocked emits Changed and schedules a save if the heads moved.
func (h *Handle) changedLocked(origin Origin, before Heads) {
	after := h.eng.heads()
	if after.Equal(before) {
		return
	}
	h.events.Publish(Event{Type: Changed, Doc: h.id, Origin: origin, Before: before, After: after})
	h.scheduleSave()
}

// rollback drops everything after before (pending and committed), keeping
// the actor: the engine is replaced by a fork at before.
func (h *Handle) rollback(before Heads) error {
	f, err := h.eng.forkAt(before)
	if err != nil {
		return fmt.Errorf("doc: undo: %w", err)
	}
	h.eng = f
	h.gen++
	return nil
}

// Read runs fn under the handle's lock. The typed writers of tx return
// ErrReadOnly; anything written through tx.Automerge is committed as a
// local change, as Change would.
func (h *Handle) Read(fn func(tx *Tx) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	before := h.eng.heads()
	tx := &Tx{eng: h.eng, readOnly: true}
	err := fn(tx)
	tx.done = true
	return errors.Join(err, h.commitLocked("", before, Origin{}))
}

// Get returns the value at p (see Tx.Get).
func (h *Handle) Get(p Path) (v any, ok bool, err error) {
	err = h.Read(func(tx *Tx) error {
		v, ok, err = tx.Get(p)
		return err
	})
	return v, ok, err
}

// Value returns the whole document as Go values (see Tx.Get).
func (h *Handle) Value() (map[string]any, error) {
	v, _, err := h.Get(nil)
	m, _ := v.(map[string]any)
	return m, err
}

// Save returns the whole document, compacted (Automerge's format; another
// peer or automerge.Load can read it).
func (h *Handle) Save() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.eng.save()
}

// ApplyChanges applies encoded changes (Change.Save bytes, concatenated)
// received from origin: each change alone (never all of a batch because
// one was named), one Changed event with origin if the heads moved. Every
// dependency must be in the document or in the batch: automerge-go decodes
// a batch as a document and refuses it otherwise. For changes that may
// arrive before their dependencies, fetch those first (sync does).
func (h *Handle) ApplyChanges(origin Origin, changes []byte) error {
	return h.receive(origin, func() error { return h.eng.applyChanges(changes) })
}

// LoadIncremental adds a snapshot, incremental chunk, encoded changes or a
// concatenation of them received from origin; one Changed event with
// origin if the heads moved. Changes whose dependencies are missing are
// refused with an error, and the document is left as it was (automerge-go
// 0.5 does not queue them). Bytes that are not Automerge data at all are
// ignored without an error (automerge-go 0.5 reports none).
func (h *Handle) LoadIncremental(origin Origin, data []byte) error {
	return h.receive(origin, func() error { return h.eng.loadIncremental(data) })
}

func (h *Handle) receive(origin Origin, fn func() error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	before := h.eng.heads()
	if err := fn(); err != nil {
		return errors.Join(fmt.Errorf("doc: %q: %w", h.id, err), h.rollback(before))
	}
	if h.eng.heads().Equal(before) {
		return nil
	}
	// The remote changes' size: what an incremental save of them holds.
	inc, err := h.eng.saveSince(before)
	if err != nil {
		return err
	}
	if h.size+len(inc) > h.opts.MaxSize {
		return errors.Join(fmt.Errorf("%w: %d + %d bytes > %d", ErrTooLarge, h.size, len(inc), h.opts.MaxSize),
			h.rollback(before))
	}
	h.size += len(inc)
	h.changedLocked(origin, before)
	return nil
}

// Merge adds every change of other that h lacks (one Changed event, origin
// local). It never holds both handles' locks (automerge-go's Doc.Merge
// takes both, and a.Merge(b) beside b.Merge(a) deadlocks): other's changes
// since h's heads are encoded under other's lock, then loaded under h's.
func (h *Handle) Merge(other *Handle) error {
	heads := h.Heads()
	other.mu.Lock()
	if other.closed {
		other.mu.Unlock()
		return ErrClosed
	}
	data, err := other.eng.saveSince(heads)
	other.mu.Unlock()
	if err != nil {
		return err
	}
	return h.receive(Origin{}, func() error { return h.eng.loadIncremental(data) })
}

// Watch returns a forward-only watcher of this handle's events: read the
// document first, then watch. Each watcher buffers Options.EventBuffer
// events; a consumer that falls further behind loses the newer events and,
// once it has read what was buffered, gets one Lagged event with the count
// (the policy of room and repo watchers). A slow consumer never slows a
// change down.
func (h *Handle) Watch() *Watcher { return &Watcher{w: h.events.Watch()} }

// ErrWatcherClosed is returned by Watcher.Next once the handle or the
// watcher closed and every buffered event was read.
var ErrWatcherClosed = errors.New("doc: watcher closed")

// Watcher is a forward-only stream of one handle's events.
type Watcher struct{ w *watch.Watcher[Event] }

// Next blocks for the next event.
func (w *Watcher) Next(ctx context.Context) (Event, error) {
	ev, err := w.w.Next(ctx)
	if errors.Is(err, watch.ErrClosed) {
		return ev, ErrWatcherClosed
	}
	return ev, err
}

// Close stops the watcher. Idempotent.
func (w *Watcher) Close() { w.w.Close() }

// Close saves what is not saved yet (bounded by ctx), stops the handle and
// ends its watchers. Later calls return ErrClosed; Close is idempotent
// (nil after the first).
func (h *Handle) Close(ctx context.Context) error {
	if !h.stop() {
		return nil
	}
	err := h.flush(ctx)
	h.events.Close()
	return err
}

// stop marks the handle closed and waits for a running debounced save. It
// reports whether it closed the handle.
func (h *Handle) stop() bool {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return false
	}
	h.closed = true
	if h.timer != nil && h.timer.Stop() {
		h.bg.Done()
	}
	h.timer = nil
	h.mu.Unlock()
	h.bg.Wait()
	return true
}

// Delete closes the handle without saving, removes every chunk of the
// document from storage, and ends the watchers with a Deleted event.
func (h *Handle) Delete(ctx context.Context) error {
	if !h.stop() {
		return ErrClosed
	}
	h.events.CloseWith(Event{Type: Deleted, Doc: h.id})
	if h.opts.Storage == nil {
		return nil
	}
	h.saveMu.Lock()
	defer h.saveMu.Unlock()
	return h.opts.Storage.RemoveRange(ctx, docPrefix(h.id))
}
