package doc

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/automerge/automerge-go"
)

// amEngine is the engine on github.com/automerge/automerge-go (Rust
// automerge 0.5.0 through cgo). It works around that version's bugs
// (notes/DOCUMENTS.md §1.4):
//   - Doc.Apply(c) applies every change of the result c came from:
//     applyChanges re-encodes each change alone (LoadChanges(c.Save())).
//   - SaveIncremental after Load re-emits the whole history: saveSince uses
//     SaveChanges(Changes(heads...)).
//   - a.Merge(b) beside b.Merge(a) deadlocks: the engine has no merge; the
//     handle merges by bytes, holding one lock at a time (Handle.Merge).
//   - concurrent container creation loses one side's edits: genesis.
type amEngine struct{ d *automerge.Doc }

func newAM() *amEngine { return &amEngine{d: automerge.New()} }

func loadAM(b []byte) (*amEngine, error) {
	d, err := automerge.Load(b)
	if err != nil {
		return nil, err
	}
	return &amEngine{d: d}, nil
}

func toHeads(hs []automerge.ChangeHash) Heads {
	out := make(Heads, len(hs))
	for i, h := range hs {
		out[i] = Hash(h)
	}
	return out
}

func fromHeads(hs Heads) []automerge.ChangeHash {
	out := make([]automerge.ChangeHash, len(hs))
	for i, h := range hs {
		out[i] = automerge.ChangeHash(h)
	}
	return out
}

func (e *amEngine) heads() Heads { return toHeads(e.d.Heads()) }

func (e *amEngine) commit(msg string) (int, error) {
	h, err := e.d.Commit(msg)
	if err != nil {
		if err.Error() == "Commit is empty" {
			return 0, nil
		}
		return 0, err
	}
	c, err := e.d.Change(h)
	if err != nil {
		return 0, err
	}
	return len(c.Save()), nil
}

func (e *amEngine) save() []byte { return e.d.Save() }

func (e *amEngine) saveSince(h Heads) ([]byte, error) {
	chs, err := e.d.Changes(fromHeads(h)...)
	if err != nil {
		return nil, err
	}
	return automerge.SaveChanges(chs), nil
}

func (e *amEngine) loadIncremental(b []byte) error { return e.d.LoadIncremental(b) }

func (e *amEngine) applyChanges(b []byte) error {
	chs, err := automerge.LoadChanges(b)
	if err != nil {
		return err
	}
	for _, c := range chs {
		if err := e.applyOne(c); err != nil {
			return err
		}
	}
	return nil
}

// applyOne applies c and nothing else. automerge-go's Apply(c) hands C the
// whole result c was decoded from, so it would apply c's siblings too; c is
// re-encoded and decoded alone first.
func (e *amEngine) applyOne(c *automerge.Change) error {
	one, err := automerge.LoadChanges(c.Save())
	if err != nil {
		return err
	}
	return e.d.Apply(one...)
}

func (e *amEngine) forkAt(h Heads) (engine, error) {
	var f *automerge.Doc
	if len(h) == 0 {
		f = automerge.New()
	} else {
		var err error
		if f, err = e.d.Fork(fromHeads(h)...); err != nil {
			return nil, err
		}
	}
	if err := f.SetActorID(e.d.ActorID()); err != nil {
		return nil, err
	}
	return &amEngine{d: f}, nil
}

// genesisActor is the fixed actor of every genesis change.
const genesisActor = "00000000000000000000000000000000"

func (e *amEngine) genesis(fn func() error) error {
	actor := e.d.ActorID()
	if err := e.d.SetActorID(genesisActor); err != nil {
		return err
	}
	err := fn()
	if err == nil {
		_, err = e.d.Commit("", automerge.CommitOptions{Time: &time.Time{}, AllowEmpty: true})
	}
	return errors.Join(err, e.d.SetActorID(actor))
}

func (e *amEngine) raw() any { return e.d }

// path checks p (automerge-go's Path panics on other segment types).
func (e *amEngine) path(p Path) (*automerge.Path, error) {
	for _, s := range p {
		switch s.(type) {
		case string, int:
		default:
			return nil, fmt.Errorf("%w: segment %T(%v), want string or int", ErrBadPath, s, s)
		}
	}
	return e.d.Path(p...), nil
}

func (e *amEngine) get(p Path) (any, bool, error) {
	ap, err := e.path(p)
	if err != nil {
		return nil, false, err
	}
	v, err := ap.Get()
	if err != nil {
		return nil, false, wrapPath(p, err)
	}
	if v.IsVoid() {
		return nil, false, nil
	}
	return v.Interface(), true, nil
}

func (e *amEngine) set(p Path, v any) error {
	ap, err := e.path(p)
	if err != nil {
		return err
	}
	if len(p) == 0 {
		return fmt.Errorf("%w: cannot replace the root", ErrBadPath)
	}
	return wrapPath(p, ap.Set(toAM(v)))
}

func (e *amEngine) del(p Path) error {
	ap, err := e.path(p)
	if err != nil {
		return err
	}
	if len(p) == 0 {
		return fmt.Errorf("%w: cannot delete the root", ErrBadPath)
	}
	v, err := ap.Get()
	if err != nil {
		return wrapPath(p, err)
	}
	if v.IsVoid() {
		return nil
	}
	return wrapPath(p, ap.Delete())
}

func (e *amEngine) appendList(p Path, vs []any) error {
	ap, err := e.path(p)
	if err != nil {
		return err
	}
	conv := make([]any, len(vs))
	for i, v := range vs {
		conv[i] = toAM(v)
	}
	return wrapPath(p, ap.List().Append(conv...))
}

func (e *amEngine) splice(p Path, pos, del int, s string) error {
	ap, err := e.path(p)
	if err != nil {
		return err
	}
	t := ap.Text()
	if n := t.Len(); pos < 0 || del < 0 || pos > n || pos+del > n {
		return fmt.Errorf("%w: splice %d+%d of a %d-character text at %v", ErrBadPath, pos, del, n, p)
	}
	return wrapPath(p, t.Splice(pos, del, s))
}

func (e *amEngine) increment(p Path, delta int64) error {
	ap, err := e.path(p)
	if err != nil {
		return err
	}
	return wrapPath(p, ap.Counter().Inc(delta))
}

func (e *amEngine) length(p Path) (int, error) {
	ap, err := e.path(p)
	if err != nil {
		return 0, err
	}
	v, err := ap.Get()
	if err != nil {
		return 0, wrapPath(p, err)
	}
	switch v.Kind() {
	case automerge.KindVoid:
		return 0, nil
	case automerge.KindList:
		return v.List().Len(), nil
	case automerge.KindMap:
		return v.Map().Len(), nil
	case automerge.KindText:
		return v.Text().Len(), nil
	}
	return 0, fmt.Errorf("%w: %v holds a %v, which has no length", ErrBadPath, p, v.Kind())
}

func wrapPath(p Path, err error) error {
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), "tried to") {
		return fmt.Errorf("%w: %v: %v", ErrBadPath, p, err)
	}
	return fmt.Errorf("doc: %v: %w", p, err)
}

// toAM turns the package's marker types (Text, Counter), also inside
// maps and slices, into automerge's.
func toAM(v any) any {
	switch x := v.(type) {
	case Text:
		return automerge.NewText(string(x))
	case Counter:
		return automerge.NewCounter(int64(x))
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, v := range x {
			out[k] = toAM(v)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, v := range x {
			out[i] = toAM(v)
		}
		return out
	case int:
		return int64(x)
	}
	return v
}
