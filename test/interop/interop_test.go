// Package interop_test checks that another implementation can speak
// Convene's protocol from docs/PROTOCOL.md and testdata/protocol-v1 alone:
// a js-libp2p peer in Node (peer.mjs, wire.mjs; pinned npm packages with
// package-lock.json) joins a room of real `peer` processes, over TCP and
// over WebSocket, and the vectors are checked by the JS code as well as by
// the Go tests.
package interop_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/convene-p2p/convene/internal/proc"
)

// ensureNode finds node and npm and installs the pinned packages (npm ci)
// when node_modules is missing or holds other versions. Without node the
// test is skipped, except in CI, where it fails.
func ensureNode(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not found: the interop test needs Node.js >= 20 and npm", tool)
			}
			t.Skipf("%s not found: the interop test needs Node.js >= 20 and npm", tool)
		}
	}
	installOnce.Do(func() {
		if pinnedInstalled() == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
		out, err := cmd.CombinedOutput()
		if err != nil {
			installErr = fmt.Errorf("npm ci: %v\n%s", err, out)
			return
		}
		installErr = pinnedInstalled()
	})
	if installErr != nil {
		t.Fatal(installErr)
	}
}

var (
	installOnce sync.Once
	installErr  error
)

// pinnedInstalled reports whether node_modules holds exactly the versions
// package.json pins.
func pinnedInstalled() error {
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	b, err := os.ReadFile("package.json")
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		return err
	}
	for name, want := range pkg.Dependencies {
		var got struct{ Version string }
		b, err := os.ReadFile(filepath.Join("node_modules", name, "package.json"))
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &got); err != nil {
			return err
		}
		if got.Version != want {
			return fmt.Errorf("%s %s installed, package.json pins %s", name, got.Version, want)
		}
	}
	return nil
}

// TestJSPassesTheVectors: wire.mjs, written from the document, produces and
// reads every vector of testdata/protocol-v1/vectors.json.
func TestJSPassesTheVectors(t *testing.T) {
	ensureNode(t)
	out, err := exec.Command("node", "vectors.mjs", "../../testdata/protocol-v1/vectors.json").CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("node vectors.mjs: %v", err)
	}
	if !strings.Contains(string(out), " passed, 0 failed") {
		t.Fatal("vectors.mjs did not pass")
	}
}

// jsPeer is a running `node peer.mjs`.
type jsPeer struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin interface{ Write([]byte) (int, error) }

	mu     sync.Mutex
	events []proc.Event
	notify chan struct{}
	done   chan struct{}
	stderr strings.Builder
}

func startJS(t *testing.T, args ...string) *jsPeer {
	t.Helper()
	cmd := exec.Command("node", append([]string{"peer.mjs"}, args...)...)
	p := &jsPeer{t: t, cmd: cmd, notify: make(chan struct{}, 1), done: make(chan struct{})}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = stdin
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &lockedBuilder{mu: &p.mu, b: &p.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e proc.Event
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			p.mu.Lock()
			p.events = append(p.events, e)
			p.mu.Unlock()
			select {
			case p.notify <- struct{}{}:
			default:
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("js peer events:\n%s\nstderr:\n%s", p.dump(), p.stderrText())
		}
	})
	return p
}

type lockedBuilder struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (l *lockedBuilder) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

func (p *jsPeer) stderrText() string { p.mu.Lock(); defer p.mu.Unlock(); return p.stderr.String() }

func (p *jsPeer) dump() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var sb strings.Builder
	for _, e := range p.events {
		b, _ := json.Marshal(e)
		sb.Write(b)
		sb.WriteByte('\n')
	}
	return sb.String()
}

func (p *jsPeer) count(pred func(proc.Event) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, e := range p.events {
		if pred(e) {
			n++
		}
	}
	return n
}

// wait waits until an event satisfies pred (pred runs without the lock).
func (p *jsPeer) wait(timeout time.Duration, what string, pred func(proc.Event) bool) proc.Event {
	p.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	find := func() (proc.Event, bool) {
		p.mu.Lock()
		evs := append([]proc.Event(nil), p.events...)
		p.mu.Unlock()
		for _, e := range evs {
			if pred(e) {
				return e, true
			}
		}
		return nil, false
	}
	for {
		if e, ok := find(); ok {
			return e
		}
		select {
		case <-p.notify:
		case <-p.done:
			if e, ok := find(); ok {
				return e
			}
			p.t.Fatalf("js peer exited before %s", what)
		case <-deadline.C:
			p.t.Fatalf("js peer: no %s within %v", what, timeout)
		}
	}
}

func (p *jsPeer) send(cmd map[string]string) {
	p.t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		p.t.Fatal(err)
	}
}

func jsType(typ string) func(proc.Event) bool {
	return func(e proc.Event) bool { return e.Str("type") == typ }
}

func jsFor(typ, peer string) func(proc.Event) bool {
	return func(e proc.Event) bool { return e.Str("type") == typ && e.Str("peer") == peer }
}

// TestJSPeerJoinsARoomOfPeerProcesses: a js-libp2p peer that knows Convene
// only from the document joins a room of two `peer` processes A and B,
// connected to A only (over TCP, or over A's WebSocket listener): it
// learns both members and their presence (B through A's fetch reply and
// A's mesh, so through relayed signed messages), both show it joined with
// its name, keep it through two timeouts of its heartbeats, show the
// presence it sets, and show it left (reason left, not timeout) at its
// goodbye — B, not connected to it, included.
func TestJSPeerJoinsARoomOfPeerProcesses(t *testing.T) {
	ensureNode(t)
	for _, tc := range []struct{ transport, listen, prefix string }{
		{"tcp", "/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/"},
		{"ws", "/ip4/127.0.0.1/tcp/0/ws", "/ip4/127.0.0.1/tcp/"},
	} {
		t.Run(tc.transport, func(t *testing.T) {
			const timeout = 3 * time.Second
			const room = "lobby"
			aArgs := append(proc.LocalArgs("goA", timeout), "--room", room)
			if tc.transport == "ws" {
				aArgs = append(aArgs, "--listen", tc.listen)
			}
			a := proc.Start(t, "A", proc.Options{}, aArgs...)
			ra := a.Ready(30 * time.Second)
			b := proc.Start(t, "B", proc.Options{}, append(proc.LocalArgs("goB", timeout), "--room", room,
				"--bootstrap", proc.TCPAddr(t, ra, "/ip4/127.0.0.1/tcp/"))...)
			rb := b.Ready(30 * time.Second)
			aID, bID := ra.Str("peer"), rb.Str("peer")
			a.Wait(20*time.Second, "A sees B", proc.Joined(room, bID))
			b.Wait(20*time.Second, "B sees A", proc.Joined(room, aID))
			a.Send(`set status "A-here"`)
			b.Send(`set status "B-here"`)
			a.Wait(10*time.Second, "A sees B's status", presence(room, bID, "status", `"B-here"`))

			var dial string
			for _, x := range ra["addrs"].([]any) {
				s := x.(string)
				if strings.HasPrefix(s, tc.prefix) && strings.Contains(s, "/ws/") == (tc.transport == "ws") {
					dial = s
				}
			}
			if dial == "" {
				t.Fatalf("A has no %s address: %v", tc.transport, ra["addrs"])
			}
			ma, mb := a.Mark(), b.Mark()
			js := startJS(t, "--room", room, "--name", "js", "--timeout-ms", fmt.Sprint(timeout.Milliseconds()),
				"--transport", tc.transport, dial)
			jsID := js.wait(30*time.Second, "ready", jsType("ready")).Str("peer")
			start := time.Now()

			// The js peer sees both members and their presence.
			js.wait(10*time.Second, "member A", jsFor("member", aID))
			js.wait(10*time.Second, "member B", jsFor("member", bID))
			js.wait(10*time.Second, "A's status", jsPresence(aID, "status", `"A-here"`))
			js.wait(10*time.Second, "B's status", jsPresence(bID, "status", `"B-here"`))

			// Both Go peers show it joined, with its name.
			for _, p := range []*proc.Proc{a, b} {
				mark := ma
				if p == b {
					mark = mb
				}
				e, _ := p.WaitFrom(mark, 10*time.Second, p.Name+" sees js", proc.Joined(room, jsID))
				if e.Str("name") != "js" {
					t.Errorf("%s: js joined as %q", p.Name, e.Str("name"))
				}
			}
			t.Logf("%s: js joined everywhere %v after its ready", tc.transport, time.Since(start).Round(time.Millisecond))

			// It sets presence; both show it.
			js.send(map[string]string{"cmd": "set", "key": "cursor", "value": `{"x":7,"y":9}`})
			for _, p := range []*proc.Proc{a, b} {
				p.WaitFrom(0, 10*time.Second, p.Name+" sees js's cursor", func(e proc.Event) bool {
					if e.Str("type") != "presence" || e.Str("peer") != jsID || e.Str("key") != "cursor" {
						return false
					}
					v, _ := json.Marshal(e["value"])
					return string(v) == `{"x":7,"y":9}`
				})
			}

			// Its heartbeats keep it a member through two timeouts.
			js.wait(4*timeout, "seven heartbeats", func(proc.Event) bool {
				return js.count(func(e proc.Event) bool { return e.Str("type") == "sent" && e.Str("kind") == "heartbeat" }) >= 7
			})
			for _, p := range []*proc.Proc{a, b} {
				if e, _, ok := p.Find(0, proc.Left(room, jsID)); ok {
					t.Fatalf("%s dropped js while it was sending heartbeats: %v", p.Name, e)
				}
			}

			// Goodbye: both show it left, reason left.
			js.send(map[string]string{"cmd": "leave"})
			lr := js.wait(10*time.Second, "left-room", jsType("left-room"))
			for _, p := range []*proc.Proc{a, b} {
				e := p.Wait(10*time.Second, p.Name+" sees js leave", proc.Left(room, jsID))
				if e.Str("reason") != "left" {
					t.Errorf("%s: js left with reason %q, want left", p.Name, e.Str("reason"))
				}
			}
			t.Logf("%s: goodbye acknowledged by %v of %v direct room peers (pass-on asked: %v)",
				tc.transport, lr["acked"], lr["peers"], lr["passOn"])
			if lr["acked"] != float64(1) {
				t.Errorf("goodbye acknowledged by %v peers, want 1 (A)", lr["acked"])
			}
		})
	}
}

func presence(room, peer, key, value string) func(proc.Event) bool {
	return func(e proc.Event) bool {
		if e.Str("type") != "presence" || e.Str("room") != room || e.Str("peer") != peer || e.Str("key") != key {
			return false
		}
		v, _ := json.Marshal(e["value"])
		return string(v) == value
	}
}

func jsPresence(peer, key, value string) func(proc.Event) bool {
	return func(e proc.Event) bool {
		return e.Str("type") == "presence" && e.Str("peer") == peer && e.Str("key") == key && e.Str("value") == value
	}
}
