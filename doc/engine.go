package doc

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
)

// Hash names one change: the SHA-256 of its encoding.
type Hash [32]byte

// String is the hash in hex, as Automerge prints it.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Heads are a document's current version: the hashes of the changes no
// other change depends on, sorted. An empty document has no heads.
type Heads []Hash

// Equal reports whether h and o name the same version.
func (h Heads) Equal(o Heads) bool { return slices.Equal(h, o) }

// digest is the SHA-256 of the heads' concatenation (the snapshot key).
func (h Heads) digest() string {
	s := sha256.New()
	for _, x := range h {
		s.Write(x[:])
	}
	return hex.EncodeToString(s.Sum(nil))
}

// engine is the seam between the handle and the CRDT library: everything
// the handle, the typed helpers and persistence need, in the library's
// neutral terms (bytes, heads, Go values). One implementation wraps
// automerge-go (amEngine); a newer binding can replace it without changing
// the handle. Not safe for concurrent use: the handle's lock guards it.
type engine interface {
	heads() Heads
	// commit turns pending operations into one change. It reports the new
	// change's encoded size, or 0 when nothing was pending (not an error).
	commit(msg string) (int, error)
	// save is the whole document, compacted.
	save() []byte
	// saveSince encodes the changes made after heads (an incremental
	// chunk, loadable by loadIncremental). It never re-emits changes the
	// heads already cover (automerge-go's SaveIncremental does after Load).
	saveSince(h Heads) ([]byte, error)
	// loadIncremental adds the changes in a snapshot, incremental chunk or
	// concatenation of them; changes whose dependencies are missing wait.
	loadIncremental(b []byte) error
	// applyChanges applies exactly the encoded changes in b, one by one.
	applyChanges(b []byte) error
	// forkAt is an independent copy as of heads, with the same actor.
	forkAt(h Heads) (engine, error)
	// genesis runs fn as the deterministic first change: a fixed actor and
	// no timestamp, so every peer running the same fn on an empty document
	// makes the same change (same hash), and their containers merge.
	genesis(fn func() error) error

	// The typed helpers.
	get(p Path) (any, bool, error)
	set(p Path, v any) error
	del(p Path) error
	appendList(p Path, vs []any) error
	splice(p Path, pos, del int, s string) error
	increment(p Path, delta int64) error
	length(p Path) (int, error)

	// raw is the library's own document, for everything the helpers lack.
	raw() any

	// newSync is a fresh sync state with one peer; loadSync decodes a
	// saved one (sync.go).
	newSync() syncEngine
	loadSync(b []byte) (syncEngine, error)
	// has reports whether every change in hs is in the document.
	has(hs Heads) bool
}
