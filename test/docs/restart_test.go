package docs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/internal/proc"
	"github.com/convene-p2p/convene/storage"
)

// docList returns the list at key of the doc-value event ev (nil if it
// is not a list of integers).
func docList(t *testing.T, ev proc.Event) []int {
	t.Helper()
	raw, _ := json.Marshal(ev["value"])
	var out []int
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil
	}
	return out
}

func isDocOK(e proc.Event) bool { return e.Str("type") == "ok" && e.Str("command") == "doc" }

// waitEvent waits for the first event of type typ from index from.
func waitEvent(t *testing.T, p *proc.Proc, from int, wait time.Duration, typ string) proc.Event {
	t.Helper()
	ev, _ := p.WaitFrom(from, wait, typ, proc.Type(typ))
	return ev
}

func isPrefixOfNaturals(l []int) bool {
	for i, v := range l {
		if v != i {
			return false
		}
	}
	return true
}

func headsOf(ev proc.Event) []string {
	var out []string
	hs, _ := ev["heads"].([]any)
	for _, h := range hs {
		s, _ := h.(string)
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// A peer killed with kill -9 while it is receiving a document (its peer
// keeps writing), restarted with the same data directory, resumes from
// its store and catches up: its store after the kill loads, with nothing
// it had flushed lost and no hole in the history; started again connected
// to the writer, it ends with exactly the writer's document and heads.
// A few rounds always; CONVENE_LONG=1 runs 20.
func TestKill9WhileSyncingResumesAndCatchesUp(t *testing.T) {
	reps := 3
	if os.Getenv("CONVENE_LONG") == "1" {
		reps = 20
	}
	const wait = 30 * time.Second
	for rep := range reps {
		t.Run(fmt.Sprint(rep), func(t *testing.T) { killWhileSyncing(t, 100+rand.IntN(200), wait) })
	}
}

func killWhileSyncing(t *testing.T, n int, wait time.Duration) {
	dir := t.TempDir()
	aArgs := append(proc.LocalArgs("writer", 3*time.Second), "--key", filepath.Join(dir, "ka"), "--data", filepath.Join(dir, "a"), "--doc", "log")
	a := proc.Start(t, "writer", proc.Options{}, aArgs...)
	ready := a.Ready(wait)
	boot := proc.TCPAddr(t, ready, "/ip4/127.0.0.1/tcp/")
	writerID := ready.Str("peer")
	bData := filepath.Join(dir, "b")
	bArgs := append(proc.LocalArgs("reader", 3*time.Second), "--key", filepath.Join(dir, "kb"), "--data", bData, "--doc", "log")
	b := proc.Start(t, "reader", proc.Options{}, append(bArgs, "--bootstrap", boot)...)
	b.Wait(wait, "connected", proc.Type("connected"))

	// The writer appends 0..n-1, one change each: the first j at once,
	// the rest once the reader holds some of them, while the reader is
	// read, flushed and killed. (Waiting for the k-th change event
	// instead hung: sync batches changes, and one event may carry all
	// n, so a second one never came.)
	j := 1 + rand.IntN(n-1)
	for i := range j {
		a.Send(fmt.Sprintf("doc append log %d", i))
	}
	b.Wait(wait, "a change from the writer", func(e proc.Event) bool {
		return e.Str("type") == "doc-changed" && e.Str("origin") == writerID
	})
	go func() {
		for i := j; i < n; i++ {
			a.Send(fmt.Sprintf("doc append log %d", i))
		}
	}()

	// Kill the reader while the writer is still writing: first read what
	// it holds, flush (Flush makes at least that durable), then kill -9
	// at once.
	// Each command's ok is waited for from the mark before it is sent:
	// the get's ok follows its doc-value, so a mark taken after the
	// doc-value would take the get's ok for the flush's and kill the
	// reader before it flushed (the store was then found empty).
	m := b.Mark()
	b.Send("doc get log")
	before := docList(t, waitEvent(t, b, m, wait, "doc-value"))
	b.WaitFrom(m, wait, "get ok", isDocOK)
	m = b.Mark()
	b.Send("doc flush")
	b.WaitFrom(m, wait, "flush ok", isDocOK)
	b.Kill()
	if len(before) == 0 || !isPrefixOfNaturals(before) {
		t.Fatalf("before the kill the reader held %v", before)
	}

	// The writer finishes (an ok for each append); its final heads are
	// the target.
	from := 0
	for range n {
		_, i := a.WaitFrom(from, wait, "the writer's appends", isDocOK)
		from = i + 1
	}
	m = a.Mark()
	a.Send("doc open log")
	want := headsOf(waitEvent(t, a, m, wait, "doc-opened"))

	// The reader's store, as the kill left it: it loads whole, with every
	// value it held before its Flush and no hole.
	st, err := storage.OpenBolt(filepath.Join(bData, "docs.bolt"), storage.BoltOptions{LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	h, err := doc.Open(context.Background(), "log", doc.Options{Storage: st})
	if err != nil {
		t.Fatalf("load after kill -9: %v", err)
	}
	v, _, err := h.Get(doc.Path{"log"})
	l, ok := v.([]any)
	if err != nil || !ok {
		t.Fatalf("after kill -9 the store has no list at log (%v, %v; heads %v, %d chunks skipped); %d values were held and flushed before; reader output:\n%s",
			v, err, h.Heads(), h.Skipped(), len(before), b.Output())
	}
	stored := make([]int, 0)
	for _, x := range l {
		stored = append(stored, int(x.(int64)))
	}
	if len(stored) < len(before) || !isPrefixOfNaturals(stored) || h.Skipped() != 0 {
		t.Fatalf("after kill -9 the store holds %d values (prefix ok: %v, %d chunks skipped); %d were held and flushed before",
			len(stored), isPrefixOfNaturals(stored), h.Skipped(), len(before))
	}
	_ = h.Close(context.Background())
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Restarted with the same data directory and connected again, the
	// reader opens what it stored and catches up to the writer.
	b2 := proc.Start(t, "reader", proc.Options{}, append(bArgs, "--bootstrap", boot)...)
	opened := b2.Wait(wait, "doc-opened", proc.Type("doc-opened"))
	if len(headsOf(opened)) == 0 {
		t.Errorf("the restarted reader opened an empty document: it did not resume from its store")
	}
	if !slices.Equal(headsOf(opened), want) {
		b2.Wait(wait, "the reader to reach the writer's heads", func(e proc.Event) bool {
			return e.Str("type") == "doc-changed" && slices.Equal(headsOf(e), want)
		})
	}
	m = b2.Mark()
	b2.Send("doc get log")
	got := docList(t, waitEvent(t, b2, m, wait, "doc-value"))
	if len(got) != n || !isPrefixOfNaturals(got) {
		t.Fatalf("the restarted reader holds %d values (prefix ok: %v), want 0..%d", len(got), isPrefixOfNaturals(got), n-1)
	}
	t.Logf("killed after %d of %d changes were sent (held %d, stored %d); caught up to %d", j, n, len(before), len(stored), len(got))
	b2.CloseStdin()
	a.CloseStdin()
	b2.WaitExit(wait)
	a.WaitExit(wait)
}
