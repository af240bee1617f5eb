// Package exampletest is what the examples' tests share: peers on
// loopback, connected and closed with the test, and waiting on a
// condition with a deadline.
package exampletest

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
)

// Peers starts one repo per name on loopback TCP with short room timings
// (repo.LocalConfig), connects each of them to the first, and closes them
// all when the test ends.
func Peers(t testing.TB, names ...string) []*repo.Repo {
	t.Helper()
	rps := make([]*repo.Repo, 0, len(names))
	for i, name := range names {
		cfg := repo.LocalConfig()
		cfg.Name = name
		rp, err := repo.New(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rp.Close() })
		if i > 0 {
			if err := rp.Connect(t.Context(), rps[0].Addrs()[0].String()); err != nil {
				t.Fatal(err)
			}
		}
		rps = append(rps, rp)
	}
	return rps
}

// Join joins every repo to room id with the repo's room config and returns
// the rooms in the same order.
func Join(t testing.TB, id string, rps ...*repo.Repo) []*room.Room {
	t.Helper()
	rooms := make([]*room.Room, 0, len(rps))
	for _, rp := range rps {
		rm, err := rp.JoinRoom(t.Context(), id, room.Config{})
		if err != nil {
			t.Fatal(err)
		}
		rooms = append(rooms, rm)
	}
	return rooms
}

// WaitMembers waits until every one of rooms lists len(rooms) members,
// that is until every peer sees every other, failing the test after 10 s.
func WaitMembers(t testing.TB, rooms ...*room.Room) {
	t.Helper()
	for _, rm := range rooms {
		WaitFor(t, 10*time.Second, "every peer to see every member", func() bool { return len(rm.Members()) == len(rooms) })
	}
}

// WaitFor waits until cond holds, failing the test after d with what it
// was waiting for. cond runs on the test's goroutine and may call t.Fatal.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// Lines is an io.Writer that collects output, safe for concurrent use.
// The zero value is empty and ready.
type Lines struct {
	mu  sync.Mutex
	buf strings.Builder
}

// Write appends p.
func (l *Lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything written so far.
func (l *Lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
