package main

// Process tests of the chat's history (the seed's Example 1 whole): real
// chat binaries on loopback, each with its own --data directory (its key
// and its bbolt store), stopped and restarted by the test.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	chatOnce sync.Once
	chatBin  string
	chatErr  error
)

// chatBinary builds the chat once per test binary.
func chatBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the chat binary")
	}
	chatOnce.Do(func() {
		dir, err := os.MkdirTemp("", "convene-chat-bin-")
		if err != nil {
			chatErr = err
			return
		}
		chatBin = filepath.Join(dir, "chat")
		if out, err := exec.Command("go", "build", "-o", chatBin, ".").CombinedOutput(); err != nil {
			chatErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if chatErr != nil {
		t.Fatal(chatErr)
	}
	return chatBin
}

// chatProc is one running chat process: its stdin (keystrokes) and its
// collected stdout.
type chatProc struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu     sync.Mutex
	lines  []string
	stderr strings.Builder
	notify chan struct{}
	done   chan struct{} // stdout ended and the process was reaped
	exit   int
}

// startChat runs the chat on loopback as name with data directory data
// (its key and messages), without waiting for members, plus args.
func startChat(t *testing.T, name, data string, args ...string) *chatProc {
	t.Helper()
	all := append([]string{"--name", name, "--room", "hist", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0",
		"--timeout", "3s", "--data", data, "--wait-members", "0"}, args...)
	cmd := exec.Command(chatBinary(t), all...)
	cmd.Env = append(os.Environ(), "GOLOG_LOG_LEVEL=")
	p := &chatProc{t: t, name: name, cmd: cmd, notify: make(chan struct{}, 1), done: make(chan struct{})}
	cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.stderr.Write(b)
	})
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
			select {
			case p.notify <- struct{}{}:
			default:
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		err := cmd.Wait()
		p.mu.Lock()
		p.exit = 0
		if ee, ok := err.(*exec.ExitError); ok {
			p.exit = ee.ExitCode()
		} else if err != nil {
			p.exit = -1
		}
		p.mu.Unlock()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s's output:\n%s\nstderr: %s", name, p.output(), p.stderrString())
		}
	})
	return p
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func (p *chatProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

func (p *chatProc) stderrString() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// mark is the number of lines so far, for waitLine.
func (p *chatProc) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// waitLine waits until a line at index >= from satisfies match and
// returns its index.
func (p *chatProc) waitLine(from int, timeout time.Duration, what string, match func(string) bool) int {
	p.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		for i := from; i < len(p.lines); i++ {
			if match(p.lines[i]) {
				p.mu.Unlock()
				return i
			}
		}
		p.mu.Unlock()
		select {
		case <-p.notify:
		case <-p.done:
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			for i := from; i < n; i++ {
				if match(p.line(i)) {
					return i
				}
			}
			p.t.Fatalf("%s ended without %s:\n%s\nstderr: %s", p.name, what, p.output(), p.stderrString())
		case <-deadline.C:
			p.t.Fatalf("%s: timed out after %v waiting for %s:\n%s", p.name, timeout, what, p.output())
		}
	}
}

func (p *chatProc) line(i int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lines[i]
}

func equals(s string) func(string) bool { return func(l string) bool { return l == s } }

func (p *chatProc) type_(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, s); err != nil {
		p.t.Fatalf("%s: typing %q: %v", p.name, s, err)
	}
}

// quit ends the chat's input and waits for it to exit 0.
func (p *chatProc) quit() {
	p.t.Helper()
	_ = p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.t.Fatalf("%s did not exit after its input ended", p.name)
	}
	p.mu.Lock()
	code := p.exit
	p.mu.Unlock()
	if code != 0 {
		p.t.Fatalf("%s exited with %d; stderr: %s", p.name, code, p.stderrString())
	}
}

// addr is the chat's loopback address with its peer ID (from its
// "listening on" line).
func (p *chatProc) addr() string {
	p.t.Helper()
	i := p.waitLine(0, 20*time.Second, "a listening line", func(l string) bool {
		return strings.HasPrefix(l, "* listening on /ip4/127.0.0.1/tcp/")
	})
	return strings.TrimPrefix(p.line(i), "* listening on ")
}

// history runs /history and returns the lines it prints (without its
// header and end line).
func (p *chatProc) history() []string {
	p.t.Helper()
	from := p.mark()
	p.type_("/history\n")
	head := p.waitLine(from, 20*time.Second, "the /history header", func(l string) bool {
		return regexp.MustCompile(`^\* \d+ lines? in "hist-messages":$`).MatchString(l)
	})
	end := p.waitLine(head, 20*time.Second, "the end of /history", equals("* end of history"))
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines[head+1:end]...)
}

// A chat that is stopped and started again with the same --data shows the
// lines written before, from its own store, with no peer around: the
// messages are a persisted document (the room keeps nothing).
func TestHistorySurvivesRestart(t *testing.T) {
	data := t.TempDir()
	a := startChat(t, "alice", data)
	a.type_("first line\nsecond line\n")
	a.waitLine(0, 20*time.Second, "her second line", equals("you: second line"))
	a.quit()

	a2 := startChat(t, "alice", data)
	i := a2.waitLine(0, 20*time.Second, "the history header", equals(`* 2 earlier lines in "hist-messages":`))
	if j := a2.waitLine(i, 20*time.Second, "the end of the history", equals("* end of history")); j != i+3 {
		t.Errorf("history ends at line %d, want %d", j, i+3)
	}
	if got := []string{a2.line(i + 1), a2.line(i + 2), a2.line(i + 3)}; strings.Join(got, "|") != "you: first line|you: second line|* end of history" {
		t.Errorf("history after restart = %q", got)
	}
	a2.quit()
}

// A node that was offline while others wrote gets the lines it missed
// when it comes back: carol chats, leaves; alice writes while carol is
// away; carol restarts with her store, shows her own history at once, and
// then alice's line arrives by sync and is printed as a new line.
func TestOfflineNodeReceivesWhatItMissed(t *testing.T) {
	dir := t.TempDir()
	alice := startChat(t, "alice", filepath.Join(dir, "a"))
	boot := alice.addr()

	carol := startChat(t, "carol", filepath.Join(dir, "c"), "--bootstrap", boot)
	carol.type_("carol was here\n")
	alice.waitLine(0, 20*time.Second, "carol's line at alice", equals("carol: carol was here"))
	carol.quit()

	alice.type_("while you were away\n")
	alice.waitLine(0, 20*time.Second, "alice's own line", equals("you: while you were away"))

	carol2 := startChat(t, "carol", filepath.Join(dir, "c"), "--bootstrap", boot)
	i := carol2.waitLine(0, 20*time.Second, "carol's history", equals(`* 1 earlier line in "hist-messages":`))
	if j := carol2.waitLine(i+1, 20*time.Second, "carol's own line in her history", equals("you: carol was here")); j != i+1 {
		t.Errorf("carol's history starts with %q, want her own line", carol2.line(i+1))
	}
	carol2.waitLine(i, 20*time.Second, "the line carol missed", equals("alice: while you were away"))
	carol2.quit()
	alice.quit()
}

// Two nodes that wrote while apart both keep their lines: bob runs alone
// (no peer) and writes; alice writes at the same time, apart from him;
// when bob comes back connected to alice, each receives the other's line,
// and both documents hold every line in the same order.
func TestLinesWrittenApartAreAllKept(t *testing.T) {
	dir := t.TempDir()
	alice := startChat(t, "alice", filepath.Join(dir, "a"))
	boot := alice.addr()

	// Together first: one line both have.
	bob := startChat(t, "bob", filepath.Join(dir, "b"), "--bootstrap", boot)
	bob.type_("together\n")
	alice.waitLine(0, 20*time.Second, "bob's first line", equals("bob: together"))
	bob.quit()

	// Apart: bob alone (no --bootstrap, no mDNS), alice on her own.
	bobAlone := startChat(t, "bob", filepath.Join(dir, "b"))
	bobAlone.type_("bob wrote apart\n")
	bobAlone.waitLine(0, 20*time.Second, "bob's apart line", equals("you: bob wrote apart"))
	mA := alice.mark()
	alice.type_("alice wrote apart\n")
	alice.waitLine(mA, 20*time.Second, "alice's apart line", equals("you: alice wrote apart"))
	bobAlone.quit()
	if strings.Contains(alice.output(), "bob wrote apart") {
		t.Fatal("alice got bob's line while they were apart: the test did not partition them")
	}

	// Together again.
	bob2 := startChat(t, "bob", filepath.Join(dir, "b"), "--bootstrap", boot)
	bob2.waitLine(0, 20*time.Second, "alice's apart line at bob", equals("alice: alice wrote apart"))
	alice.waitLine(mA, 20*time.Second, "bob's apart line at alice", equals("bob: bob wrote apart"))

	// The same lines in the same order on both, each in its own words.
	ha, hb := alice.history(), bob2.history()
	if len(ha) != 3 || len(hb) != 3 {
		t.Fatalf("histories: alice %q, bob %q; want 3 lines each", ha, hb)
	}
	for i := range ha {
		a := strings.Replace(ha[i], "you: ", "alice: ", 1)
		b := strings.Replace(hb[i], "you: ", "bob: ", 1)
		if a != b {
			t.Errorf("line %d: alice has %q, bob has %q", i, ha[i], hb[i])
		}
	}
	bob2.quit()
	alice.quit()
}
