// Package docs_test holds process-level fault tests of documents.
package docs_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/storage"
)

// The writer process (this test binary, re-executed): opens the store,
// then appends 0, 1, 2, ... to the list "log" one change at a time, with
// debounced saves running all along, and after some changes calls Flush
// and prints "F <n>": every value up to n is durable (else "C <n>": n is
// changed, its save pending). It never stops on
// its own; the test kills it with SIGKILL.
func TestHelperCrashWriter(t *testing.T) {
	path := os.Getenv("CONVENE_CRASH_STORE")
	if path == "" {
		t.Skip("helper process for TestKill9KeepsEveryFlushedChange")
	}
	ctx := context.Background()
	st, err := storage.OpenBolt(path, storage.BoltOptions{LockTimeout: 5 * time.Second})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	h, err := doc.Open(ctx, "log", doc.Options{Storage: st, SaveDelay: time.Millisecond})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	n := 0
	if v, ok, _ := h.Get(doc.Path{"log"}); ok {
		n = len(v.([]any))
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "READY", n)
	out.Flush()
	for i := n; ; i++ {
		if err := h.Change(func(tx *doc.Tx) error {
			return errors.Join(tx.Append(doc.Path{"log"}, i), tx.Set(doc.Path{"pad"}, strings.Repeat("p", i%200)))
		}); err != nil {
			fmt.Println("ERR", err)
			os.Exit(3)
		}
		if rand.IntN(4) == 0 {
			if err := h.Flush(ctx); err != nil {
				fmt.Println("ERR", err)
				os.Exit(3)
			}
			fmt.Fprintln(out, "F", i)
		} else {
			fmt.Fprintln(out, "C", i) // changed, not flushed
		}
		out.Flush()
	}
}

// A process kill -9'd in the middle of a stream of changes (debounced
// saves and Flushes in flight) reopens its bbolt store and loads every
// change Flush had returned for, and nothing that loaded before is lost.
// A few rounds always; CONVENE_LONG=1 runs 25.
func TestKill9KeepsEveryFlushedChange(t *testing.T) {
	reps := 3
	if os.Getenv("CONVENE_LONG") == "1" {
		reps = 25
	}
	path := filepath.Join(t.TempDir(), "docs.bolt")
	loaded := 0 // values the store held at the last check
	for rep := range reps {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCrashWriter$", "-test.v=false")
		cmd.Env = append(os.Environ(), "CONVENE_CRASH_STORE="+path)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Kill after a random number of changes, flushed or not: the
		// debounced saves of the unflushed ones are in flight then.
		left := 1 + rand.IntN(400)
		flushed, ready, changed := -1, -1, -1
		deadline := time.After(60 * time.Second)
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("rep %d: writer ended: %v", rep, cmd.Wait())
				}
				f := strings.Fields(l)
				switch {
				case len(f) == 2 && f[0] == "READY":
					ready, _ = strconv.Atoi(f[1])
					if ready < loaded {
						t.Fatalf("rep %d: the writer loaded %d values, %d were there before", rep, ready, loaded)
					}
				case len(f) == 2 && (f[0] == "F" || f[0] == "C"):
					changed, _ = strconv.Atoi(f[1])
					if f[0] == "F" {
						flushed = changed
					}
					if left--; left == 0 {
						break read // kill now, with the writer mid-stream
					}
				case strings.HasPrefix(l, "ERR"):
					t.Fatalf("rep %d: writer: %s", rep, l)
				}
			case <-deadline:
				_ = cmd.Process.Kill()
				t.Fatalf("rep %d: no output from the writer for 60 s", rep)
			}
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		for range lines { // drain
		}

		st, err := storage.OpenBolt(path, storage.BoltOptions{LockTimeout: 5 * time.Second})
		if err != nil {
			t.Fatalf("rep %d: reopen after kill -9: %v", rep, err)
		}
		h, err := doc.Open(context.Background(), "log", doc.Options{Storage: st})
		if err != nil {
			t.Fatalf("rep %d: load after kill -9: %v", rep, err)
		}
		v, _, _ := h.Get(doc.Path{"log"})
		list, _ := v.([]any)
		for i, x := range list {
			if x != int64(i) {
				t.Fatalf("rep %d: log[%d] = %v: the stored history has a hole", rep, i, x)
			}
		}
		if len(list) <= flushed {
			t.Fatalf("rep %d: %d values after kill -9, Flush had returned for 0..%d", rep, len(list), flushed)
		}
		if h.Skipped() != 0 {
			t.Fatalf("rep %d: %d chunks did not load", rep, h.Skipped())
		}
		t.Logf("rep %d: started from %d, killed after change %d (Flush of 0..%d); reopened with %d values (%d beyond the last Flush)",
			rep, ready, changed, flushed, len(list), len(list)-1-flushed)
		loaded = len(list)
		_ = h.Close(context.Background())
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
