package repo_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
)

// readmeSnippet is the Go snippet of README.md ("Use it from Go"), between
// the markers, so that the compiler checks it; TestREADMESnippetIsCompiled
// checks that README shows exactly these lines. It is not run: its zero
// Config turns mDNS on, which tests keep off the machine's real network.
func readmeSnippet(ctx context.Context) error {
	// README:begin
	r, err := repo.New(ctx, repo.Config{Name: "alice"}) // mDNS on, random ports
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.Shutdown(ctx) // a goodbye in every room, bounded by ctx; r.Close() stops at once
	}()

	lobby, err := r.JoinRoom(ctx, "lobby", room.Config{}) // zero Config = room.DefaultConfig()
	if err != nil {
		return err
	}
	if err := lobby.SetJSON("cursor", map[string]int{"x": 100, "y": 200}); err != nil {
		return err
	}

	w := lobby.Watch() // forward-only: read Members()/States() first, then watch
	defer w.Close()
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			return err // room.ErrClosed once the room is destroyed
		}
		switch ev.Type {
		case room.MemberJoined:
			fmt.Println("joined:", ev.Member.Peer, ev.Member.Name) // Name may be empty until member-updated
		case room.MemberLeft:
			fmt.Println("left:", ev.Member.Peer, ev.Member.Name, ev.Reason) // left or timeout
		case room.PresenceChanged:
			var cursor struct{ X, Y int }
			if ok, _ := lobby.GetJSON(ev.Change.Peer, "cursor", &cursor); ok {
				fmt.Println("cursor of", ev.Change.Peer, "at", cursor.X, cursor.Y)
			}
		}
	}
	// README:end
}

var _ = readmeSnippet

// README's Go snippet is the code above, line for line (one tab of
// indentation less), so it compiles and is kept correct: it printed
// "presence-changed invalid-peer" when it read ev.Member on a presence
// event.
func TestREADMESnippetIsCompiled(t *testing.T) {
	src, err := os.ReadFile("readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	body := between(t, string(src), "\t// README:begin\n", "\t// README:end\n")
	var want []string
	for _, line := range strings.SplitAfter(body, "\n") {
		want = append(want, strings.TrimPrefix(line, "\t"))
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	got := between(t, string(readme), "```go\n", "```\n")
	if got != strings.Join(want, "") {
		t.Errorf("README.md's Go snippet differs from readmeSnippet in repo/readme_test.go; README has:\n%s\nwant:\n%s", got, strings.Join(want, ""))
	}
}

func between(t *testing.T, s, begin, end string) string {
	t.Helper()
	_, rest, ok := strings.Cut(s, begin)
	if !ok {
		t.Fatalf("no %q", begin)
	}
	body, _, ok := strings.Cut(rest, end)
	if !ok {
		t.Fatalf("no %q after %q", end, begin)
	}
	return body
}
