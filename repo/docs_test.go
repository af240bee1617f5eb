package repo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
	"github.com/convene-p2p/convene/storage"
)

func TestDocIsGetOrCreateWithEvents(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, nil)
	w := r.Watch()
	defer w.Close()
	if r.HasDoc("notes") || len(r.DocIDs()) != 0 {
		t.Fatal("a fresh repo has documents")
	}
	h, err := r.Doc(ctx, "notes")
	if err != nil {
		t.Fatal(err)
	}
	h2, err := r.Doc(ctx, "notes")
	if err != nil || h2 != h {
		t.Fatalf("second Doc: %p %v, want the same handle %p", h2, err, h)
	}
	if ev := nextEvent(t, w); ev.Type != repo.DocCreated || ev.Doc != "notes" || ev.Type.String() != "doc-created" {
		t.Fatalf("event %+v, want doc-created notes", ev)
	}
	if _, err := r.Doc(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, w); ev.Type != repo.DocCreated || ev.Doc != "b" {
		t.Fatalf("event %+v, want doc-created b (and none for the second Doc of notes)", ev)
	}
	if !r.HasDoc("notes") || fmt.Sprint(r.DocIDs()) != "[b notes]" {
		t.Fatalf("HasDoc %v DocIDs %v", r.HasDoc("notes"), r.DocIDs())
	}
	if _, err := r.Doc(ctx, ""); !errors.Is(err, doc.ErrBadID) {
		t.Fatalf("empty ID: %v", err)
	}
	// Concurrent first calls open one handle.
	var wg sync.WaitGroup
	hs := make([]*doc.Handle, 8)
	for i := range hs {
		wg.Add(1)
		go func() { defer wg.Done(); hs[i], _ = r.Doc(ctx, "race") }()
	}
	wg.Wait()
	for _, x := range hs {
		if x == nil || x != hs[0] {
			t.Fatal("concurrent Doc calls returned different handles")
		}
	}
}

func boltAt(t *testing.T, path string) *storage.Bolt {
	t.Helper()
	s, err := storage.OpenBolt(path, storage.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDocsSurviveARestartAndDeletesStay(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "docs.bolt")
	st := boltAt(t, path)
	r := newRepo(t, func(c *repo.Config) { c.Storage = st })
	h, err := r.Doc(ctx, "chat-general-messages")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Change(func(tx *doc.Tx) error {
		return tx.Append(doc.Path{"messages"}, map[string]any{"from": "ana", "text": "hi"})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Doc(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	w := r.Watch()
	if err := r.DeleteDoc(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, w); ev.Type != repo.DocDestroyed || ev.Doc != "gone" || ev.Type.String() != "doc-destroyed" {
		t.Fatalf("event %+v, want doc-destroyed", ev)
	}
	w.Close()
	if r.HasDoc("gone") {
		t.Fatal("HasDoc after DeleteDoc")
	}
	if _, err := r.Doc(ctx, "gone"); !errors.Is(err, repo.ErrDeleted) {
		t.Fatalf("Doc after DeleteDoc: %v, want ErrDeleted", err)
	}
	if err := r.Close(); err != nil { // flushes the documents
		t.Fatal(err)
	}
	// A second process (here: a second open) is refused while st is open.
	if _, err := storage.OpenBolt(path, storage.BoltOptions{LockTimeout: 50 * time.Millisecond}); !errors.Is(err, storage.ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	st.Close()

	st2 := boltAt(t, path)
	defer st2.Close()
	r2 := newRepo(t, func(c *repo.Config) { c.Storage = st2 })
	if got := r2.DocIDs(); fmt.Sprint(got) != "[chat-general-messages]" {
		t.Fatalf("DocIDs after restart = %v", got)
	}
	h2, err := r2.Doc(ctx, "chat-general-messages")
	if err != nil {
		t.Fatal(err)
	}
	if v, _, _ := h2.Get(doc.Path{"messages", 0, "text"}); v != "hi" {
		t.Fatalf("after restart messages[0].text = %v", v)
	}
	if _, err := r2.Doc(ctx, "gone"); !errors.Is(err, repo.ErrDeleted) {
		t.Fatalf("deleted doc after restart: %v, want ErrDeleted", err)
	}
	chunks, _ := st2.LoadRange(ctx, storage.Key{"doc", "gone"})
	if len(chunks) != 0 {
		t.Fatalf("%d chunks of a deleted document left", len(chunks))
	}
}

// recordingStore is a storage adapter that keeps a copy of everything it is given.
type recordingStore struct {
	*storage.Memory
	mu   sync.Mutex
	seen []storage.Chunk
}

func (r *recordingStore) note(cs ...storage.Chunk) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		r.seen = append(r.seen, storage.Chunk{Key: append(storage.Key(nil), c.Key...), Data: bytes.Clone(c.Data)})
	}
}

func (r *recordingStore) Save(ctx context.Context, k storage.Key, d []byte) error {
	r.note(storage.Chunk{Key: k, Data: d})
	return r.Memory.Save(ctx, k, d)
}

func (r *recordingStore) Remove(ctx context.Context, k storage.Key) error {
	r.note(storage.Chunk{Key: k})
	return r.Memory.Remove(ctx, k)
}

func (r *recordingStore) RemoveRange(ctx context.Context, k storage.Key) error {
	r.note(storage.Chunk{Key: k})
	return r.Memory.RemoveRange(ctx, k)
}

func (r *recordingStore) Batch(ctx context.Context, save []storage.Chunk, remove []storage.Key) error {
	r.note(save...)
	for _, k := range remove {
		r.note(storage.Chunk{Key: k})
	}
	return r.Memory.Batch(ctx, save, remove)
}

func (r *recordingStore) chunks() []storage.Chunk {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]storage.Chunk(nil), r.seen...)
}

// Storage is room-agnostic: with rooms busy beside documents (presence,
// broadcasts, members with names and meta), no room or presence byte ever
// reaches the adapter; only document chunks, the index and tombstones do.
func TestStorageNeverSeesRoomData(t *testing.T) {
	ctx := context.Background()
	const mark = "zq7room" // in every room-side string
	recs := []*recordingStore{{Memory: storage.NewMemory()}, {Memory: storage.NewMemory()}}
	var rs []*repo.Repo
	for i, rec := range recs {
		rs = append(rs, newRepo(t, func(c *repo.Config) {
			c.Storage = rec
			c.Name = fmt.Sprintf("name-%s-%d", mark, i)
			c.Meta = map[string]string{"meta-" + mark: "v-" + mark}
			c.Docs.SaveDelay = 5 * time.Millisecond
		}))
	}
	if err := rs[1].Connect(ctx, rs[0].Addrs()[0].String()); err != nil {
		t.Fatal(err)
	}
	roomID := "room-" + mark
	a, b := join(t, rs[0], roomID), join(t, rs[1], roomID)
	bw := b.Watch()
	defer bw.Close()
	ha, err := rs[0].Doc(ctx, "notes")
	if err != nil {
		t.Fatal(err)
	}
	hb, err := rs[1].Doc(ctx, "todo")
	if err != nil {
		t.Fatal(err)
	}
	var final string
	for i := range 100 {
		final = fmt.Sprintf("cursor-%s-%d", mark, i)
		if err := a.SetJSON("cursor-"+mark, final); err != nil {
			t.Fatal(err)
		}
		if err := b.SetJSON("typing-"+mark, i); err != nil {
			t.Fatal(err)
		}
		for _, h := range []*doc.Handle{ha, hb} {
			if err := h.Change(func(tx *doc.Tx) error { return tx.Append(doc.Path{"items"}, i) }); err != nil {
				t.Fatal(err)
			}
		}
		if i%10 == 0 {
			_ = a.Broadcast(ctx, []byte("broadcast-"+mark))
		}
	}
	// The rooms really were busy: b saw a's last presence and a broadcast.
	sawBroadcast := false
	deadline, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		var got string
		ok, _ := b.GetJSON(room.PeerID(rs[0].ID()), "cursor-"+mark, &got)
		if ok && got == final && sawBroadcast {
			break
		}
		ev, err := bw.Next(deadline)
		if err != nil {
			t.Fatalf("room traffic did not arrive (presence %q ok=%v, broadcast %v): %v", got, ok, sawBroadcast, err)
		}
		if ev.Type == room.Broadcast && strings.Contains(string(ev.Payload), mark) {
			sawBroadcast = true
		}
	}
	if err := rs[0].DeleteDoc(ctx, "notes"); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for i, rec := range recs {
		cs := rec.chunks()
		if len(cs) < 3 {
			t.Fatalf("repo %d: only %d storage calls: the documents were not saved", i, len(cs))
		}
		for _, c := range cs {
			switch c.Key[0] {
			case "doc", "index", "tombstone":
			default:
				t.Errorf("repo %d stored key %q: not a document key", i, c.Key)
			}
			for _, part := range c.Key {
				if strings.Contains(part, mark) {
					t.Errorf("repo %d: room data in a key: %q", i, c.Key)
				}
			}
			if bytes.Contains(c.Data, []byte(mark)) {
				t.Errorf("repo %d: room data in the value of %q", i, c.Key)
			}
		}
	}
}
