package doc

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/convene-p2p/convene/storage"
)

func stores(t *testing.T) map[string]storage.Adapter {
	b, err := storage.OpenBolt(filepath.Join(t.TempDir(), "docs.bolt"), storage.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return map[string]storage.Adapter{"memory": storage.NewMemory(), "bolt": b}
}

func TestStoredDocumentReopens(t *testing.T) {
	ctx := context.Background()
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			h, err := Open(ctx, "d", Options{Storage: st})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 100 {
				mustChange(t, h, func(tx *Tx) error {
					return errors.Join(tx.Append(Path{"list"}, i), tx.Set(Path{"last"}, randomText(20)))
				})
				if i%10 == 0 {
					if err := h.Flush(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			want, heads := get(t, h, "last"), h.Heads()
			if err := h.Close(ctx); err != nil {
				t.Fatal(err)
			}
			h2 := open(t, "d", Options{Storage: st})
			if !h2.Heads().Equal(heads) || get(t, h2, "last") != want {
				t.Fatalf("reopened at %v last=%v, want %v last=%v", h2.Heads(), get(t, h2, "last"), heads, want)
			}
			if l := get(t, h2, "list").([]any); len(l) != 100 {
				t.Fatalf("list has %d items, want 100", len(l))
			}
			// Nothing of a never-saved document.
			other := open(t, "other", Options{Storage: st})
			if len(other.Heads()) != 0 {
				t.Fatal("a new document is not empty")
			}
		})
	}
}

// notifying is a memory adapter that signals every save.
type notifying struct {
	*storage.Memory
	saved chan struct{}
}

func (n *notifying) Save(ctx context.Context, key storage.Key, data []byte) error {
	defer n.notify()
	return n.Memory.Save(ctx, key, data)
}

func (n *notifying) Batch(ctx context.Context, save []storage.Chunk, remove []storage.Key) error {
	defer n.notify()
	return n.Memory.Batch(ctx, save, remove)
}

func (n *notifying) notify() {
	select {
	case n.saved <- struct{}{}:
	default:
	}
}

func TestDebouncedSaveReachesStorage(t *testing.T) {
	st := &notifying{Memory: storage.NewMemory(), saved: make(chan struct{}, 1)}
	h := open(t, "deb", Options{Storage: st, SaveDelay: 20 * time.Millisecond})
	mustChange(t, h, func(tx *Tx) error { return tx.Set(Path{"a"}, 1) })
	select {
	case <-st.saved:
	case <-time.After(10 * time.Second):
		t.Fatal("a change was not saved within 10 s without Flush")
	}
	if cs, _ := st.LoadRange(context.Background(), docPrefix("deb")); len(cs) == 0 {
		t.Fatal("the save left no chunk of the document")
	}
}

// Incrementals never outgrow the snapshot: storage stays within twice the
// document's Save size (plus the small-document allowance).
func TestCompactionBoundsStorage(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMemory()
	h := open(t, "cmp", Options{Storage: st})
	compactions := 0
	for i := range 600 {
		mustChange(t, h, func(tx *Tx) error { return tx.Set(Path{fmt.Sprint("k", i%50)}, randomText(8)) })
		if err := h.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		cs, _ := st.LoadRange(ctx, docPrefix("cmp"))
		total, snaps := 0, 0
		for _, c := range cs {
			total += len(c.Data)
			if c.Key[2] == kindSnapshot {
				snaps++
			}
		}
		if snaps != 1 {
			t.Fatalf("after save %d: %d snapshots, want 1", i, snaps)
		}
		if len(cs) == 1 {
			compactions++
		}
		if save := len(h.Save()); total > 2*save+compactBelow {
			t.Fatalf("after save %d: %d bytes stored for a %d-byte document", i, total, save)
		}
	}
	if compactions < 2 {
		t.Fatalf("%d compactions in 600 saves", compactions)
	}
	// Loading the compacted store gives the same document.
	heads := h.Heads()
	h.Close(ctx)
	if h2 := open(t, "cmp", Options{Storage: st}); !h2.Heads().Equal(heads) {
		t.Fatal("compacted store loads differently")
	}
}

// A damaged chunk never loses the document: the rest loads chunk by chunk.
func TestDamagedChunkFallsBackChunkByChunk(t *testing.T) {
	ctx := context.Background()
	for _, damage := range []string{"truncated last", "garbage middle"} {
		t.Run(damage, func(t *testing.T) {
			st := storage.NewMemory()
			h, err := Open(ctx, "dmg", Options{Storage: st})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 30 { // a snapshot above compactBelow
				mustChange(t, h, func(tx *Tx) error { return tx.Set(Path{fmt.Sprint("base", i)}, randomText(40)) })
			}
			if err := h.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				mustChange(t, h, func(tx *Tx) error { return tx.Set(Path{fmt.Sprint("inc", i)}, i) })
				if err := h.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			h.Close(ctx)
			incs, _ := st.LoadRange(ctx, Key("dmg", kindIncremental))
			if len(incs) != 2 {
				t.Fatalf("%d incremental chunks, want 2", len(incs))
			}
			switch damage {
			case "truncated last":
				// A torn write: the last chunk (by key order; either one
				// is the newest for this check) cut in half.
				c := incs[1]
				_ = st.Save(ctx, c.Key, c.Data[:len(c.Data)/2])
			case "garbage middle":
				_ = st.Save(ctx, storage.Key{"doc", "dmg", kindIncremental, "zz-garbage"}, []byte("not a chunk"))
			}
			h2 := open(t, "dmg", Options{Storage: st})
			if h2.Skipped() != 1 {
				t.Fatalf("Skipped = %d, want 1", h2.Skipped())
			}
			for i := range 30 {
				if get(t, h2, fmt.Sprint("base", i)) == nil {
					t.Fatalf("base%d lost with one damaged chunk", i)
				}
			}
			if damage == "garbage middle" && (get(t, h2, "inc0") != int64(0) || get(t, h2, "inc1") != int64(1)) {
				t.Fatal("the good incrementals were lost beside a garbage chunk")
			}
			// Later saves and compactions never delete the skipped chunk.
			for i := range 40 {
				mustChange(t, h2, func(tx *Tx) error { return tx.Set(Path{fmt.Sprint("after", i)}, randomText(30)) })
				if err := h2.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			h2.Close(ctx)
			h3 := open(t, "dmg", Options{Storage: st})
			if h3.Skipped() != 1 || get(t, h3, "after39") == nil || get(t, h3, "base0") == nil {
				t.Fatalf("after compactions: Skipped=%d", h3.Skipped())
			}
		})
	}
}

func TestOpenRefusesAStoredDocumentOverMaxSize(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMemory()
	h, _ := Open(ctx, "big", Options{Storage: st})
	mustChange(t, h, func(tx *Tx) error { return tx.Set(Path{"x"}, randomText(4000)) })
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, "big", Options{Storage: st, MaxSize: 1000}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Open over MaxSize: %v, want ErrTooLarge", err)
	}
}

func TestDeleteRemovesEveryChunk(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMemory()
	h, _ := Open(ctx, "del", Options{Storage: st})
	w := h.Watch()
	mustChange(t, h, func(tx *Tx) error { return tx.Set(Path{"x"}, 1) })
	_ = h.Flush(ctx)
	mustChange(t, h, func(tx *Tx) error { return tx.Set(Path{"y"}, 1) }) // pending save
	if err := h.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if cs, _ := st.LoadRange(ctx, docPrefix("del")); len(cs) != 0 {
		t.Fatalf("%d chunks left after Delete", len(cs))
	}
	var last Event
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			break
		}
		last = ev
	}
	if last.Type != Deleted {
		t.Fatalf("last event %v, want Deleted", last.Type)
	}
}
