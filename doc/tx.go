package doc

import (
	"errors"

	"github.com/automerge/automerge-go"
)

// Path points into a document: map keys (string) and list indexes (int)
// from the root. The empty Path is the root map.
type Path []any

// Text is a value for Set that makes a collaborative text (edited with
// Splice; concurrent edits merge by character) instead of a plain string
// (replaced whole, last writer wins).
type Text string

// Counter is a value for Set that makes a counter (changed with
// Increment; concurrent increments add up).
type Counter int64

var errTxDone = errors.New("doc: Tx used after its Change or Read returned")

// Tx is a document inside one Change or Read: the typed helpers cover the
// JSON-like cases; Automerge reaches the whole automerge-go API. A Tx is
// valid only until its function returns.
type Tx struct {
	eng      engine
	readOnly bool
	done     bool
}

func (tx *Tx) check(write bool) error {
	if tx.done {
		return errTxDone
	}
	if write && tx.readOnly {
		return ErrReadOnly
	}
	return nil
}

// Get returns the value at p as Go values: map[string]any, []any, string
// (for strings and Text), int64 (for counters and integers), float64,
// uint64, bool, []byte, time.Time or nil. ok is false when nothing is
// there.
func (tx *Tx) Get(p Path) (v any, ok bool, err error) {
	if err := tx.check(false); err != nil {
		return nil, false, err
	}
	return tx.eng.get(p)
}

// Set writes v at p, creating missing parent maps (and appending to a list
// when the index is its length). v may be a scalar (string, bool, int and
// the other integer types, float64, []byte, time.Time, nil), Text,
// Counter, a map[string]any, a slice or a struct (converted recursively,
// with `automerge:"name"` tags).
func (tx *Tx) Set(p Path, v any) error {
	if err := tx.check(true); err != nil {
		return err
	}
	return tx.eng.set(p, v)
}

// Delete removes the value at p; nothing there is a no-op.
func (tx *Tx) Delete(p Path) error {
	if err := tx.check(true); err != nil {
		return err
	}
	return tx.eng.del(p)
}

// Append adds values to the end of the list at p (created if missing).
func (tx *Tx) Append(p Path, values ...any) error {
	if err := tx.check(true); err != nil {
		return err
	}
	return tx.eng.appendList(p, values)
}

// Splice edits the text at p (created if missing): it deletes del
// characters at pos and inserts s there. Positions count Unicode code
// points.
func (tx *Tx) Splice(p Path, pos, del int, s string) error {
	if err := tx.check(true); err != nil {
		return err
	}
	return tx.eng.splice(p, pos, del, s)
}

// Increment adds delta to the counter at p (created at 0 if missing).
func (tx *Tx) Increment(p Path, delta int64) error {
	if err := tx.check(true); err != nil {
		return err
	}
	return tx.eng.increment(p, delta)
}

// Len is the length of the list, map (keys) or text (code points) at p; 0
// when nothing is there.
func (tx *Tx) Len(p Path) (int, error) {
	if err := tx.check(false); err != nil {
		return 0, err
	}
	return tx.eng.length(p)
}

// Automerge is the underlying automerge-go document, for what the typed
// helpers do not cover (marks are not wrapped by that version). Use it
// only inside the Change or Read; do not call Commit, Merge or Apply on it
// (the handle commits, and Handle.Merge and Handle.ApplyChanges avoid
// those calls' bugs).
func (tx *Tx) Automerge() *automerge.Doc {
	d, _ := tx.eng.raw().(*automerge.Doc)
	return d
}
