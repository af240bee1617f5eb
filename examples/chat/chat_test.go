package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/convene-p2p/convene/examples/internal/exampletest"
	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// client is one running chat: its repo, the pipe that feeds its keystrokes
// and its collected output.
type client struct {
	rp   *repo.Repo
	in   *io.PipeWriter
	out  *exampletest.Lines
	done chan error
}

// type_ sends keystrokes.
func (c *client) type_(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c.in, s); err != nil {
		t.Fatalf("typing %q: %v", s, err)
	}
}

// startPair starts two chats, alice and bob, on loopback repos connected to
// each other, and waits until each sees the other joined.
func startPair(t *testing.T, ttl time.Duration) (alice, bob *client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rps := exampletest.Peers(t, "alice", "bob")
	ra, rb := rps[0], rps[1]
	start := func(rp *repo.Repo) *client {
		pr, pw := io.Pipe()
		c := &client{rp: rp, in: pw, out: &exampletest.Lines{}, done: make(chan error, 1)}
		go func() { c.done <- Run(ctx, rp, pr, c.out, Options{Room: "test-chat", TypingTTL: ttl}) }()
		t.Cleanup(func() {
			_ = pw.Close()
			select {
			case err := <-c.done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return after its input closed")
			}
		})
		return c
	}
	alice, bob = start(ra), start(rb)
	exampletest.WaitFor(t, 20*time.Second, "alice to see bob join", func() bool { return strings.Contains(alice.out.String(), "* bob joined") })
	exampletest.WaitFor(t, 20*time.Second, "bob to see alice join", func() bool { return strings.Contains(bob.out.String(), "* alice joined") })
	return alice, bob
}

// typingAt reports whether rp's copy of the room holds peer's typing key.
func typingAt(rp *repo.Repo, peer room.PeerID) bool {
	rm, ok := rp.Room("test-chat")
	if !ok {
		return false
	}
	_, ok = rm.Get(peer, typingKey)
	return ok
}

// typingUpAt reports whether rp's copy of the room shows peer typing: its
// typing key holds true.
func typingUpAt(rp *repo.Repo, peer room.PeerID) bool {
	rm, ok := rp.Room("test-chat")
	if !ok {
		return false
	}
	var on bool
	ok, err := rm.GetJSON(peer, typingKey, &on)
	return ok && err == nil && on
}

// A keystroke puts the typing indicator up at the other peer (as presence,
// shown as a line), and with no further keystrokes it expires there by
// itself after the TTL: "stopped typing".
func TestTypingIndicatorAppearsThenExpires(t *testing.T) {
	const ttl = 1500 * time.Millisecond
	alice, bob := startPair(t, ttl)
	alicePeer := alice.rp.Self().Peer

	typed := time.Now()
	alice.type_(t, "hel")
	exampletest.WaitFor(t, 20*time.Second, "bob to see alice typing", func() bool {
		return strings.Contains(bob.out.String(), "* alice is typing…") && typingAt(bob.rp, alicePeer)
	})
	if elapsed := time.Since(typed); elapsed >= ttl {
		t.Fatalf("typing indicator arrived after %v, not before its TTL %v", elapsed, ttl)
	}
	exampletest.WaitFor(t, ttl+5*time.Second, "alice's typing to expire at bob", func() bool {
		return strings.Contains(bob.out.String(), "* alice stopped typing") && !typingAt(bob.rp, alicePeer)
	})
	if elapsed := time.Since(typed); elapsed < ttl {
		t.Fatalf("typing indicator expired after %v, before its TTL %v", elapsed, ttl)
	}
	if strings.Contains(bob.out.String(), "alice: ") {
		t.Fatalf("bob got a chat line although alice never pressed Enter:\n%s", bob.out)
	}
}

// Enter broadcasts the line (it arrives, with the sender's name) and takes
// the typing indicator down at once, well before its TTL would, and without
// a "stopped typing" line.
func TestChatLineArrivesAndClearsTyping(t *testing.T) {
	const ttl = 20 * time.Second // anything cleared within the test was deleted, not expired
	alice, bob := startPair(t, ttl)
	alicePeer := alice.rp.Self().Peer

	alice.type_(t, "hello bo")
	exampletest.WaitFor(t, 20*time.Second, "bob to see alice typing", func() bool { return typingAt(bob.rp, alicePeer) })
	alice.type_(t, "b\n")
	exampletest.WaitFor(t, 20*time.Second, "bob to get alice's line", func() bool { return strings.Contains(bob.out.String(), "alice: hello bob\n") })
	exampletest.WaitFor(t, 20*time.Second, "alice's typing to be cleared at bob", func() bool { return !typingAt(bob.rp, alicePeer) })
	if strings.Contains(bob.out.String(), "stopped typing") {
		t.Fatalf("a sent line should clear the indicator silently:\n%s", bob.out)
	}
	if !strings.Contains(alice.out.String(), "you: hello bob\n") {
		t.Fatalf("alice's own line is not shown to her:\n%s", alice.out)
	}

	// And back: bob answers; backspace edits the line before it is sent.
	bob.type_(t, "hi alicd\x7fe\n")
	exampletest.WaitFor(t, 20*time.Second, "alice to get bob's line", func() bool { return strings.Contains(alice.out.String(), "bob: hi alice\n") })
}

// End of input leaves the room with a goodbye: the other side sees "left"
// (not a timeout), and Run returns nil.
func TestEndOfInputLeaves(t *testing.T) {
	alice, bob := startPair(t, time.Second)
	_ = alice.in.Close()
	select {
	case err := <-alice.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		alice.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return at end of input")
	}
	exampletest.WaitFor(t, 20*time.Second, "bob to see alice leave", func() bool { return strings.Contains(bob.out.String(), "* alice left\n") })
}

// Control characters from a peer are shown quoted, never sent to the
// terminal raw.
func TestCleanQuotesControlCharacters(t *testing.T) {
	for in, want := range map[string]string{
		"hello":          "hello",
		"héllo ✓":        "héllo ✓",
		"evil\x1b[2J":    `"evil\x1b[2J"`,
		"bad\xffutf8":    `"bad\xffutf8"`,
		"two\nlines":     `"two\nlines"`,
		"":               "",
		"tab\tseparated": `"tab\tseparated"`,
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %s, want %s", in, got, want)
		}
	}
}

// A command (/who) takes the typing indicator down, and since no chat line
// follows, the other side says that alice stopped typing, well before the
// TTL (20 s) could have expired it. (Before, the indicator was deleted as
// after a line, and the other side printed nothing: alice stayed "is
// typing…" on bob's screen.)
func TestTypingStopsAfterCommand(t *testing.T) {
	const ttl = 20 * time.Second
	alice, bob := startPair(t, ttl)
	alicePeer := alice.rp.Self().Peer

	alice.type_(t, "/wh")
	exampletest.WaitFor(t, 20*time.Second, "bob to see alice typing", func() bool {
		return strings.Contains(bob.out.String(), "* alice is typing…") && typingAt(bob.rp, alicePeer)
	})
	alice.type_(t, "o\n")
	exampletest.WaitFor(t, 20*time.Second, "alice's member list", func() bool {
		return strings.Contains(alice.out.String(), "* you, bob are here") || strings.Contains(alice.out.String(), "* bob, you are here")
	})
	exampletest.WaitFor(t, 20*time.Second, "bob to see alice stop typing", func() bool {
		return strings.Contains(bob.out.String(), "* alice stopped typing\n") && !typingUpAt(bob.rp, alicePeer)
	})
	if strings.Contains(bob.out.String(), "alice: /who") {
		t.Fatalf("the command was sent as a chat line:\n%s", bob.out)
	}
}

// The scripted use of the README, printf 'hello\n' | chat ..., with the
// chat built as a binary and connected over loopback: with stdin not a
// terminal it waits until it has met alice, sends the line, and leaves
// only once the line has had time to arrive. Alice sees the line, then
// the goodbye, and the script exits 0. (Before, it said hello to an empty
// room and left.)
func TestPipedLineReachesListener(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the chat binary")
	}
	bin := filepath.Join(t.TempDir(), "chat")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // after the cleanup below, which ends alice's Run by closing its input
	ra := exampletest.Peers(t, "alice")[0]
	pr, pw := io.Pipe()
	out := &exampletest.Lines{}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, ra, pr, out, Options{Room: "scripted"}) }()
	t.Cleanup(func() {
		_ = pw.Close()
		if err := <-done; err != nil {
			t.Errorf("alice's Run: %v", err)
		}
	})
	exampletest.WaitFor(t, 20*time.Second, "alice in the room", func() bool { return strings.Contains(out.String(), "only you are here") })

	script := fmt.Sprintf("printf 'hello\\n' | %s --name bob --room scripted --no-store --no-mdns --listen /ip4/127.0.0.1/tcp/0 --bootstrap %s", bin, ra.Addrs()[0])
	cmd := exec.Command("sh", "-c", script)
	cmd.Env = append(os.Environ(), "USER=bob")
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, res)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("alice:\n%s\nbob's script:\n%s", out, res)
		}
	})
	// Bob's first message may reach alice before his identity does (a
	// delta admits him with no name: room's doc), so his line is labelled
	// with his name or with the end of his peer ID.
	m := regexp.MustCompile(`/p2p/(12D3KooW\w+)`).FindSubmatch(res)
	if m == nil {
		t.Fatalf("bob's output has no address with his peer ID:\n%s", res)
	}
	short := "…" + string(m[1][len(m[1])-6:])
	exampletest.WaitFor(t, 10*time.Second, "alice to get bob's line, then his goodbye", func() bool {
		s := out.String()
		i := strings.Index(s, "\nbob: hello\n")
		if i < 0 {
			i = strings.Index(s, "\n"+short+": hello\n")
		}
		return i >= 0 && strings.Contains(s[i:], "* bob left\n")
	})
}
