package doc

import (
	"context"
	"testing"

	"github.com/convene-p2p/convene/storage"
)

// seeds are real encodings: a snapshot, an incremental chunk, their
// concatenation and torn copies.
func seeds() [][]byte {
	e := newAM()
	_ = e.set(Path{"a"}, "x")
	_ = e.set(Path{"t"}, Text("hello"))
	_, _ = e.commit("")
	snap := e.save()
	heads := e.heads()
	_ = e.appendList(Path{"l"}, []any{1, 2})
	_, _ = e.commit("")
	inc, _ := e.saveSince(heads)
	cat := append(append([]byte(nil), snap...), inc...)
	return [][]byte{snap, inc, cat, snap[:len(snap)/2], inc[:len(inc)-1], {}, []byte("garbage")}
}

// FuzzOpenChunks: whatever a store holds for a document, Open loads it or
// returns an error, never panics, and a loaded handle takes changes.
func FuzzOpenChunks(f *testing.F) {
	s := seeds()
	f.Add(s[0], s[1], []byte(nil))
	f.Add(s[3], s[1], s[4])
	f.Add(s[2], s[6], s[1])
	f.Fuzz(func(t *testing.T, snap, inc1, inc2 []byte) {
		ctx := context.Background()
		st := storage.NewMemory()
		_ = st.Save(ctx, storage.Key{"doc", "f", kindSnapshot, "s"}, snap)
		_ = st.Save(ctx, storage.Key{"doc", "f", kindIncremental, "1"}, inc1)
		_ = st.Save(ctx, storage.Key{"doc", "f", kindIncremental, "2"}, inc2)
		h, err := Open(ctx, "f", Options{Storage: st})
		if err != nil {
			return
		}
		defer h.Close(ctx)
		if err := h.Change(func(tx *Tx) error { return tx.Set(Path{"fuzz"}, 1) }); err != nil {
			t.Fatalf("change after load: %v", err)
		}
		_, _ = h.Value()
		if err := h.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzReceive: bytes from a peer (changes or chunks) give an error or
// apply, never panic; the handle keeps working.
func FuzzReceive(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Open(context.Background(), "r", Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close(context.Background())
		_ = h.ApplyChanges(Origin{Peer: "p"}, b)
		_ = h.LoadIncremental(Origin{Peer: "p"}, b)
		_, _ = h.Value()
		if err := h.Change(func(tx *Tx) error { return tx.Set(Path{"after"}, 1) }); err != nil {
			t.Fatalf("change after receive: %v", err)
		}
	})
}
