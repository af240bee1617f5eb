package doc

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestChangeCommitsOnceAndEmitsOneEvent(t *testing.T) {
	h := open(t, "c", Options{})
	w := h.Watch()
	defer w.Close()
	before := h.Heads()
	mustChange(t, h, func(tx *Tx) error {
		if err := tx.Set(Path{"a"}, 1); err != nil {
			return err
		}
		return tx.Set(Path{"b", "c"}, "x")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ev, err := w.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != Changed || ev.Doc != "c" || !ev.Origin.Local() || !ev.Before.Equal(before) || !ev.After.Equal(h.Heads()) || len(ev.After) != 1 {
		t.Fatalf("event %+v, want Changed local from %v to %v", ev, before, h.Heads())
	}
	// An empty edit is a no-op: nil, no change, no event.
	heads := h.Heads()
	if err := h.Change(func(tx *Tx) error { return nil }); err != nil {
		t.Fatalf("empty change: %v", err)
	}
	if !h.Heads().Equal(heads) {
		t.Fatal("an empty change moved the heads")
	}
	mustChange(t, h, func(tx *Tx) error { return tx.Set(Path{"a"}, 2) })
	ev, _ = w.Next(ctx)
	if !ev.Before.Equal(heads) {
		t.Fatalf("the event after an empty change starts at %v, want %v (the empty change emitted nothing)", ev.Before, heads)
	}
}

func TestChangeErrorUndoesTheEdit(t *testing.T) {
	h := open(t, "u", Options{})
	mustChange(t, h, func(tx *Tx) error { return tx.Set(Path{"a"}, "kept") })
	heads := h.Heads()
	boom := errors.New("boom")
	err := h.Change(func(tx *Tx) error {
		_ = tx.Set(Path{"a"}, "undone")
		_ = tx.Set(Path{"b"}, "undone")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Change = %v, want boom", err)
	}
	if !h.Heads().Equal(heads) || get(t, h, "a") != "kept" || get(t, h, "b") != nil {
		t.Fatalf("after a failed change: heads %v, a=%v b=%v", h.Heads(), get(t, h, "a"), get(t, h, "b"))
	}
	// The handle keeps working (same actor, next change commits).
	mustChange(t, h, func(tx *Tx) error { return tx.Set(Path{"b"}, "new") })
	if get(t, h, "b") != "new" {
		t.Fatal("change after undo lost")
	}
}

func TestTypedHelpers(t *testing.T) {
	h := open(t, "t", Options{})
	mustChange(t, h, func(tx *Tx) error {
		return errors.Join(
			tx.Set(Path{"user", "name"}, "ana"),
			tx.Set(Path{"user", "age"}, 30),
			tx.Set(Path{"tags"}, []any{"a"}),
			tx.Append(Path{"tags"}, "b", "c"),
			tx.Set(Path{"body"}, Text("hello")),
			tx.Splice(Path{"body"}, 5, 0, " world"),
			tx.Splice(Path{"body"}, 0, 1, "H"),
			tx.Increment(Path{"views"}, 2),
			tx.Increment(Path{"views"}, 3),
			tx.Set(Path{"gone"}, true),
			tx.Delete(Path{"gone"}),
			tx.Delete(Path{"never"}),
		)
	})
	v, err := h.Value()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"user": map[string]any{"name": "ana", "age": int64(30)},
		"tags": []any{"a", "b", "c"}, "body": "Hello world", "views": int64(5),
	}
	if !equalJSON(v, want) {
		t.Fatalf("document %#v, want %#v", v, want)
	}
	if get(t, h, "tags", 1) != "b" || get(t, h, "user", "name") != "ana" {
		t.Fatal("get by path")
	}
	_ = h.Read(func(tx *Tx) error {
		for p, n := range map[string]int{"tags": 3, "body": 11, "user": 2, "none": 0} {
			if got, err := tx.Len(Path{p}); err != nil || got != n {
				t.Errorf("Len(%s) = %d %v, want %d", p, got, err, n)
			}
		}
		if err := tx.Set(Path{"x"}, 1); !errors.Is(err, ErrReadOnly) {
			t.Errorf("Set in Read: %v, want ErrReadOnly", err)
		}
		return nil
	})
	// Bad paths are errors, never panics.
	for _, p := range []Path{{1.5}, {"tags", "x", "y"}, {"body", 0}} {
		err := h.Change(func(tx *Tx) error { return tx.Set(p, 1) })
		if err == nil {
			t.Errorf("Set(%v) accepted", p)
		}
	}
	if err := h.Change(func(tx *Tx) error { return tx.Splice(Path{"body"}, 100, 0, "x") }); !errors.Is(err, ErrBadPath) {
		t.Errorf("splice past the end: %v", err)
	}
	if err := h.Change(func(tx *Tx) error { return tx.Set(nil, 1) }); !errors.Is(err, ErrBadPath) {
		t.Errorf("set of the root: %v", err)
	}
	// The whole automerge API is reachable.
	mustChange(t, h, func(tx *Tx) error { return tx.Automerge().Path("raw").Set("yes") })
	if get(t, h, "raw") != "yes" {
		t.Fatal("raw write lost")
	}
}

func equalJSON(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k := range x {
			if !equalJSON(x[k], y[k]) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}

// Many goroutines changing one handle: every change is atomic and emits
// exactly one event.
func TestConcurrentChangesAreAtomic(t *testing.T) {
	h := open(t, "cc", Options{EventBuffer: 10000})
	w := h.Watch()
	defer w.Close()
	const g, n = 8, 50
	var wg sync.WaitGroup
	for range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				// Two writes that must stay together.
				if err := h.Change(func(tx *Tx) error {
					v, _, _ := tx.Get(Path{"n"})
					x, _ := v.(int64)
					return errors.Join(tx.Set(Path{"n"}, x+1), tx.Set(Path{"copy"}, x+1))
				}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if get(t, h, "n") != int64(g*n) || get(t, h, "copy") != int64(g*n) {
		t.Fatalf("n=%v copy=%v, want %d", get(t, h, "n"), get(t, h, "copy"), g*n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var prev Heads
	for i := range g * n {
		ev, err := w.Next(ctx)
		if err != nil || ev.Type != Changed {
			t.Fatalf("event %d: %+v %v", i, ev, err)
		}
		if i > 0 && !ev.Before.Equal(prev) {
			t.Fatalf("event %d starts at %v, the last ended at %v", i, ev.Before, prev)
		}
		prev = ev.After
	}
}

func TestSlowWatcherLagsWithCount(t *testing.T) {
	h := open(t, "w", Options{EventBuffer: 2})
	w := h.Watch()
	defer w.Close()
	for i := range 10 {
		mustChange(t, h, func(tx *Tx) error { return tx.Set(Path{"i"}, i) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []Event
	for range 3 {
		ev, err := w.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	if got[0].Type != Changed || got[1].Type != Changed || got[2].Type != Lagged || got[2].Dropped != 8 {
		t.Fatalf("events %+v, want 2 Changed then Lagged{8}", got)
	}
}

func TestCloseEndsWatchersAndRefusesChanges(t *testing.T) {
	h, err := Open(context.Background(), "x", Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := h.Watch()
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := w.Next(context.Background()); !errors.Is(err, ErrWatcherClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	if err := h.Change(func(tx *Tx) error { return tx.Set(Path{"a"}, 1) }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Change after Close: %v", err)
	}
}

func TestRemoteChangesCarryTheirOrigin(t *testing.T) {
	src := open(t, "r", Options{})
	mustChange(t, src, func(tx *Tx) error { return tx.Set(Path{"a"}, 1) })
	dst := open(t, "r", Options{})
	w := dst.Watch()
	defer w.Close()
	if err := dst.LoadIncremental(Origin{Peer: "peer-b"}, src.Save()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ev, err := w.Next(ctx)
	if err != nil || ev.Origin.Peer != "peer-b" || ev.Origin.Local() || len(ev.Before) != 0 || !ev.After.Equal(src.Heads()) {
		t.Fatalf("remote event %+v %v", ev, err)
	}
	// Already-known changes move nothing and emit nothing.
	if err := dst.LoadIncremental(Origin{Peer: "peer-b"}, src.Save()); err != nil {
		t.Fatal(err)
	}
	if err := dst.ApplyChanges(Origin{Peer: "peer-b"}, []byte("garbage")); err == nil {
		t.Fatal("garbage changes accepted")
	}
	if get(t, dst, "a") != int64(1) {
		t.Fatal("remote value lost")
	}
}

func TestMaxSizeRefusesTheChangeAndUndoesIt(t *testing.T) {
	h := open(t, "big", Options{MaxSize: 2000})
	mustChange(t, h, func(tx *Tx) error { return tx.Set(Path{"small"}, "ok") })
	heads := h.Heads()
	err := h.Change(func(tx *Tx) error { return tx.Set(Path{"huge"}, randomText(5000)) })
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized change: %v, want ErrTooLarge", err)
	}
	if !h.Heads().Equal(heads) || get(t, h, "huge") != nil {
		t.Fatal("the refused change stayed in the document")
	}
	mustChange(t, h, func(tx *Tx) error { return tx.Set(Path{"small"}, "still ok") })
}

// A change that arrives before its dependency is refused and leaves the
// document as it was; once the dependency is there it applies (automerge-go
// 0.5 does not queue orphans: sync must send dependencies first).
func TestLoadIncrementalRefusesOrphansAndKeepsTheDocument(t *testing.T) {
	src := open(t, "o", Options{})
	mustChange(t, src, func(tx *Tx) error { return tx.Set(Path{"a"}, 1) })
	first := src.Heads()
	mustChange(t, src, func(tx *Tx) error { return tx.Set(Path{"b"}, 2) })
	var dep, orphan []byte
	_ = src.Read(func(tx *Tx) error {
		orphan, _ = src.eng.saveSince(first)
		all, _ := src.eng.saveSince(nil)
		dep = all[:len(all)-len(orphan)]
		return nil
	})
	dst := open(t, "o", Options{})
	if err := dst.LoadIncremental(Origin{Peer: "p"}, orphan); err == nil {
		t.Fatal("an orphan change was accepted")
	}
	if len(dst.Heads()) != 0 || get(t, dst, "b") != nil {
		t.Fatal("a refused orphan changed the document")
	}
	if err := dst.LoadIncremental(Origin{Peer: "p"}, dep); err != nil {
		t.Fatal(err)
	}
	if err := dst.LoadIncremental(Origin{Peer: "p"}, orphan); err != nil {
		t.Fatal(err)
	}
	if !dst.Heads().Equal(src.Heads()) || get(t, dst, "b") != int64(2) {
		t.Fatalf("after the dependency: heads %v b=%v", dst.Heads(), get(t, dst, "b"))
	}
}
