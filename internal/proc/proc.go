// Package proc runs real `peer` processes for fault tests (STYLE.md layer
// 4): it builds cmd/peer once per test binary, starts `peer run --json`
// (on loopback, or inside a network namespace made with Netns), feeds
// stdin, sends signals (SIGSTOP, SIGCONT, SIGKILL, SIGTERM) and reads the
// NDJSON events of docs/CLI.md. Tests wait for events with deadlines;
// nothing sleeps.
package proc

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/peer once per test binary and returns its path. It
// skips the test under -short.
func Binary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("process tests build and run the peer binary; skipped with -short")
	}
	buildOnce.Do(func() {
		// The library module's root, from this file's own path: the
		// tests that call Binary may sit in another module (examples/).
		_, self, _, ok := runtime.Caller(0)
		if !ok {
			buildErr = fmt.Errorf("proc: cannot locate the module root")
			return
		}
		root := filepath.Join(filepath.Dir(self), "..", "..")
		dir, err := os.MkdirTemp("", "convene-peer-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "peer")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/peer")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/peer: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// LocalArgs are the flags of a node on loopback only: JSON output, no mDNS,
// no DHT, a random TCP port on 127.0.0.1, the given room timeout and name.
func LocalArgs(name string, timeout time.Duration) []string {
	return []string{"run", "--json", "--no-mdns", "--dht", "off", "--listen", "/ip4/127.0.0.1/tcp/0",
		"--timeout", timeout.String(), "--name", name}
}

// Event is one NDJSON line of `peer --json` (docs/CLI.md).
type Event map[string]any

// Str returns field k as a string ("" if absent or not a string).
func (e Event) Str(k string) string { s, _ := e[k].(string); return s }

// Options start a process.
type Options struct {
	// Netns, if set, runs the process in that network namespace
	// (ip netns exec; the process keeps its PID, so signals reach it).
	Netns string
	// Env is added to the process's environment. Each process gets its own
	// XDG_CONFIG_HOME (a test temp dir) unless Env sets one.
	Env []string
}

// Proc is one running `peer` process.
type Proc struct {
	t    testing.TB
	Name string
	cmd  *exec.Cmd

	stdinMu sync.Mutex
	stdin   io.WriteCloser

	mu     sync.Mutex
	events []Event
	raw    []string
	notify chan struct{} // poked after every line
	stderr strings.Builder
	done   chan struct{} // closed once stdout ended and the process was reaped
	exit   int           // exit code once done (-1 if killed by a signal)
}

// Start runs the peer binary with args (e.g. LocalArgs plus "--room", id).
// The process is killed and reaped when the test ends.
func Start(t testing.TB, name string, opts Options, args ...string) *Proc {
	t.Helper()
	bin := Binary(t)
	var cmd *exec.Cmd
	if opts.Netns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", opts.Netns, bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	env := append(os.Environ(), "GOLOG_LOG_LEVEL=")
	if !hasKey(opts.Env, "XDG_CONFIG_HOME") {
		env = append(env, "XDG_CONFIG_HOME="+t.TempDir())
	}
	cmd.Env = append(env, opts.Env...)
	p := &Proc{t: t, Name: name, cmd: cmd, notify: make(chan struct{}, 1), done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = stdin
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.read(stdout)
	t.Cleanup(func() {
		// A stopped process ignores SIGKILL until continued on some
		// kernels' job control paths: continue it first.
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

func hasKey(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (p *Proc) read(r io.Reader) {
	defer close(p.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev Event
		err := json.Unmarshal(sc.Bytes(), &ev)
		p.mu.Lock()
		p.raw = append(p.raw, sc.Text())
		if err == nil && ev != nil {
			p.events = append(p.events, ev)
		}
		p.mu.Unlock()
		select {
		case p.notify <- struct{}{}:
		default:
		}
	}
	_, _ = io.Copy(io.Discard, r)
	err := p.cmd.Wait()
	var ee *exec.ExitError
	code := 0
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		code = -1
	}
	p.mu.Lock()
	p.exit = code
	p.mu.Unlock()
}

// Pid is the process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Send writes one stdin command line.
func (p *Proc) Send(line string) {
	p.t.Helper()
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("%s: write %q: %v", p.Name, line, err)
	}
}

// CloseStdin closes stdin (EOF: `peer run` says goodbye and exits).
func (p *Proc) CloseStdin() {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	_ = p.stdin.Close()
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: signal %v: %v", p.Name, sig, err)
	}
}

// Stop freezes the process (SIGSTOP): its connections stay open.
func (p *Proc) Stop() { p.t.Helper(); p.Signal(syscall.SIGSTOP) }

// Cont continues a stopped process (SIGCONT).
func (p *Proc) Cont() { p.t.Helper(); p.Signal(syscall.SIGCONT) }

// Kill kills the process (SIGKILL) and waits until it is reaped.
func (p *Proc) Kill() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Done is closed once the process has exited and its output was read.
func (p *Proc) Done() <-chan struct{} { return p.done }

// WaitExit waits for the process to exit and returns its exit code.
func (p *Proc) WaitExit(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.exit
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v; output:\n%s", p.Name, timeout, p.Output())
		return -1
	}
}

// Mark is the number of events read so far: pass it to WaitFrom to wait
// only for later events.
func (p *Proc) Mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.events)
}

// Events returns a copy of the events read so far.
func (p *Proc) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.events...)
}

// Output is every stdout line so far, then stderr.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.raw, "\n") + "\n-- stderr:\n" + p.stderr.String()
}

// Find returns the first event at index >= from matching pred, without
// waiting.
func (p *Proc) Find(from int, pred func(Event) bool) (Event, int, bool) {
	ev, i, _ := p.find(from, pred)
	return ev, i, i >= 0
}

// find is Find that also returns how many events it looked through, read
// under the same lock: a waiter resumes from there, never skipping an
// event that arrived between its look and its next one.
func (p *Proc) find(from int, pred func(Event) bool) (Event, int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := from; i < len(p.events); i++ {
		if pred(p.events[i]) {
			return p.events[i], i, i
		}
	}
	return nil, -1, max(from, len(p.events))
}

// WaitFrom waits until an event at index >= from satisfies pred and returns
// it with its index. It fails the test after timeout, or if the output
// ends first.
func (p *Proc) WaitFrom(from int, timeout time.Duration, what string, pred func(Event) bool) (Event, int) {
	p.t.Helper()
	ev, i, err := p.Await(from, timeout, pred)
	if err != nil {
		p.t.Fatalf("%s: %v waiting for %s; output:\n%s", p.Name, err, what, p.Output())
	}
	return ev, i
}

// Wait is WaitFrom(0, ...).
func (p *Proc) Wait(timeout time.Duration, what string, pred func(Event) bool) Event {
	p.t.Helper()
	ev, _ := p.WaitFrom(0, timeout, what, pred)
	return ev
}

// Await is WaitFrom returning an error instead of failing the test.
func (p *Proc) Await(from int, timeout time.Duration, pred func(Event) bool) (Event, int, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ev, i, seen := p.find(from, pred)
		if i >= 0 {
			return ev, i, nil
		}
		from = seen
		select {
		case <-p.notify:
		case <-p.done:
			if ev, i, ok := p.Find(from, pred); ok {
				return ev, i, nil
			}
			return nil, -1, errors.New("output ended")
		case <-deadline.C:
			return nil, -1, fmt.Errorf("timed out after %v", timeout)
		}
	}
}

// Ready waits for the "ready" event and returns it (peer ID and addresses).
func (p *Proc) Ready(timeout time.Duration) Event {
	p.t.Helper()
	return p.Wait(timeout, "ready", Type("ready"))
}

// TCPAddr returns the ready event's first address starting with prefix
// (e.g. "/ip4/127.0.0.1/tcp/").
func TCPAddr(t testing.TB, ready Event, prefix string) string {
	t.Helper()
	addrs, _ := ready["addrs"].([]any)
	for _, a := range addrs {
		if s, _ := a.(string); strings.HasPrefix(s, prefix) {
			return s
		}
	}
	t.Fatalf("no address with prefix %q in %v", prefix, ready["addrs"])
	return ""
}

// Type matches events of type typ.
func Type(typ string) func(Event) bool {
	return func(e Event) bool { return e.Str("type") == typ }
}

// Joined matches member-joined in room for peer (peer ID string).
func Joined(room, peer string) func(Event) bool {
	return func(e Event) bool {
		return e.Str("type") == "member-joined" && e.Str("room") == room && e.Str("peer") == peer
	}
}

// Left matches member-left in room for peer.
func Left(room, peer string) func(Event) bool {
	return func(e Event) bool {
		return e.Str("type") == "member-left" && e.Str("room") == room && e.Str("peer") == peer
	}
}
