package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// assertOneLineError checks the contract for a failed start: exactly one
// line on stderr, nothing on stdout, no panic or stack trace.
func assertOneLineError(t *testing.T, stdout, stderr string, want string) {
	t.Helper()
	if stdout != "" {
		t.Errorf("stdout = %q, want nothing", stdout)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr = %q, want exactly one line", stderr)
	}
	if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
		t.Errorf("stderr looks like a crash: %q", stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr = %q, want it to contain %q", stderr, want)
	}
}

func runCapture(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = runContext(context.Background(), context.Background(), args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestRunUsageErrorsExit2(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"start"}, `peer: unknown command "start"`},
		{"unknown flag", []string{"run", "--bogus"}, "peer run: flag provided but not defined: -bogus"},
		{"bad listen multiaddr", []string{"run", "--listen", "127.0.0.1:4001"}, `peer run: --listen "127.0.0.1:4001"`},
		{"bad bootstrap multiaddr", []string{"run", "--bootstrap", "/ip4/999.1.1.1/tcp/1/p2p/" + alicePeer}, `peer run: --bootstrap`},
		{"bootstrap without peer ID", []string{"run", "--bootstrap", "/ip4/127.0.0.1/tcp/4001"}, "/p2p/<peer ID>"},
		{"room with slash", []string{"run", "--ephemeral", "--room", "a/b"}, `peer run: --room: room: invalid room id "a/b": contains '/'`},
		{"room with control char", []string{"run", "--ephemeral", "--room", "a\x01b"}, "control character"},
		{"room too long", []string{"run", "--ephemeral", "--room", strings.Repeat("r", 129)}, "129 bytes"},
		{"room invalid UTF-8", []string{"run", "--ephemeral", "--room", "\xff"}, "not valid UTF-8"},
		{"bad dht", []string{"run", "--dht", "maybe"}, "--dht"},
		{"bad timeout", []string{"run", "--timeout", "-3s"}, "--timeout"},
		{"bad log level", []string{"run", "--log-level", "chatty"}, "--log-level"},
		{"positional", []string{"run", "lobby"}, `unexpected argument "lobby"`},
		{"id bad flag", []string{"id", "--nope"}, "peer id: flag provided but not defined: -nope"},
		{"version extra", []string{"version", "now"}, `peer version: unexpected argument "now"`},
		{"help unknown", []string{"help", "dance"}, `peer help: unknown command "dance"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCapture(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit code = %d, want %d", code, exitUsage)
			}
			assertOneLineError(t, stdout, stderr, tc.want)
		})
	}
}

func TestRunWithoutArgumentsPrintsUsageAndExits2(t *testing.T) {
	code, stdout, stderr := runCapture(t)
	if code != exitUsage || stdout != "" || !strings.Contains(stderr, "Usage:") {
		t.Errorf("code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestHelpExits0(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"help"}, "peer run [flags]"},
		{[]string{"--help"}, "peer run [flags]"},
		{[]string{"help", "run"}, "--bootstrap ADDR"},
		{[]string{"run", "-h"}, "--bootstrap ADDR"},
		{[]string{"run", "--help"}, "--stay"},
		{[]string{"help", "id"}, "--create"},
		{[]string{"id", "-h"}, "--create"},
	} {
		code, stdout, stderr := runCapture(t, tc.args...)
		if code != exitOK || stderr != "" || !strings.Contains(stdout, tc.want) {
			t.Errorf("%v: code %d, stderr %q, stdout lacks %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestRunUsageDocumentsEveryFlag(t *testing.T) {
	for _, f := range []string{"--name", "--meta", "--room", "--listen", "--bootstrap", "--key", "--ephemeral", "--mdns", "--no-mdns", "--dht", "--timeout", "--json", "--stay", "--log-level"} {
		if !strings.Contains(runUsageText, f) {
			t.Errorf("peer help run does not mention %s", f)
		}
	}
}

func TestVersion(t *testing.T) {
	code, stdout, stderr := runCapture(t, "version")
	if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "peer ") {
		t.Errorf("version: %d %q %q", code, stdout, stderr)
	}
	code, stdout, _ = runCapture(t, "version", "--json")
	if code != 0 {
		t.Fatalf("version --json: exit %d", code)
	}
	m := checkSchema(t, []byte(stdout))
	if m["type"] != "version" || !strings.HasPrefix(m["go"].(string), "go") {
		t.Errorf("version --json = %v", m)
	}
}

func TestIDRequiresKeyFileUnlessCreate(t *testing.T) {
	key := filepath.Join(t.TempDir(), "sub", "key")
	code, stdout, stderr := runCapture(t, "id", "--key", key)
	if code != exitRuntime {
		t.Errorf("missing key: exit %d, want %d", code, exitRuntime)
	}
	assertOneLineError(t, stdout, stderr, "no key file at "+key)
	if _, err := os.Stat(key); err == nil {
		t.Error("peer id without --create created the key file")
	}

	code, stdout, _ = runCapture(t, "id", "--key", key, "--create", "--json", "--listen", "/ip4/127.0.0.1/tcp/4001")
	if code != 0 {
		t.Fatalf("--create: exit %d", code)
	}
	m := checkSchema(t, []byte(stdout))
	id := m["peer"].(string)
	if !strings.HasPrefix(id, "12D3KooW") || m["created"] != true {
		t.Errorf("--create: %v", m)
	}
	addrs := m["addrs"].([]any)
	if len(addrs) != 1 || addrs[0] != "/ip4/127.0.0.1/tcp/4001/p2p/"+id {
		t.Errorf("addrs = %v", addrs)
	}
	fi, err := os.Stat(key)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}

	code, stdout, _ = runCapture(t, "id", "--key", key)
	if code != 0 || strings.TrimSpace(stdout) != id {
		t.Errorf("second run: exit %d, printed %q, want the same ID %s", code, stdout, id)
	}
}

func TestIDCorruptKeyFile(t *testing.T) {
	key := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCapture(t, "id", "--key", key, "--create")
	if code != exitRuntime {
		t.Errorf("exit %d, want %d", code, exitRuntime)
	}
	assertOneLineError(t, stdout, stderr, "corrupt")
	if data, _ := os.ReadFile(key); string(data) != "not a key" {
		t.Error("corrupt key file was overwritten")
	}
}

func TestRunKeyFileErrorsExit1(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt")
	if err := os.WriteFile(corrupt, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key, want string
	}{
		{"corrupt", corrupt, "corrupt"},
		{"directory", dir, "key file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCapture(t, "run", "--key", tc.key, "--no-mdns", "--dht", "off", "--listen", "/ip4/127.0.0.1/tcp/0")
			if code != exitRuntime {
				t.Errorf("exit %d, want %d", code, exitRuntime)
			}
			assertOneLineError(t, stdout, stderr, tc.want)
		})
	}
}

func TestRunKeyFileInUseExit1(t *testing.T) {
	key := filepath.Join(t.TempDir(), "key")
	unlock, err := lockKey(key)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	code, stdout, stderr := runCapture(t, "run", "--key", key, "--no-mdns", "--dht", "off", "--listen", "/ip4/127.0.0.1/tcp/0")
	if code != exitRuntime {
		t.Errorf("exit %d, want %d", code, exitRuntime)
	}
	assertOneLineError(t, stdout, stderr, "in use by another running peer")
	if !strings.HasPrefix(stderr, "peer run: key file "+key+" is in use") {
		t.Errorf("stderr = %q, want it to start with \"peer run: \" as docs/CLI.md says", stderr)
	}
}

// inProcess is `peer run` running inside the test, fed through a pipe.
type inProcess struct {
	*eventLog
	stdin  *io.PipeWriter
	code   chan int
	cancel context.CancelFunc // what the first SIGINT/SIGTERM does
	abort  context.CancelFunc // what a second one does
	cursor int
}

func startInProcess(t *testing.T, args ...string) *inProcess {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	abort, cancelAbort := context.WithCancel(context.Background())
	p := &inProcess{eventLog: newEventLog(t, "in-process peer"), stdin: inW, code: make(chan int, 1), cancel: cancel, abort: cancelAbort}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		code := runContext(ctx, abort, append([]string{"run"}, args...), inR, outW, p.stderr)
		outW.Close()
		inR.Close()
		p.code <- code
	}()
	go func() {
		defer wg.Done()
		p.read(outR, nil)
	}()
	t.Cleanup(func() {
		cancel()
		cancelAbort()
		inW.Close()
		wg.Wait()
	})
	return p
}

// send writes a command line; later next calls look at what was printed
// from now on.
func (p *inProcess) send(line string) {
	p.t.Helper()
	p.cursor = p.mark()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("write %q: %v", line, err)
	}
}

// next waits for the first event since the last send that satisfies pred.
// Room events are printed by other goroutines than command answers, so
// their relative order is not fixed: each wait searches from the send.
func (p *inProcess) next(what string, pred func(map[string]any) bool) map[string]any {
	p.t.Helper()
	return p.waitFrom(p.cursor, 20*time.Second, what, pred)
}

func isType(typ string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["type"] == typ }
}

func isOK(cmd string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["type"] == "ok" && m["command"] == cmd }
}

func TestRunInProcessCommands(t *testing.T) {
	p := startInProcess(t, "--json", "--ephemeral", "--no-mdns", "--dht", "off", "--listen", "/ip4/127.0.0.1/tcp/0",
		"--name", "alice", "--meta", "color=red", "--room", "lobby", "--timeout", "3s")
	ready := p.next("ready", isType("ready"))
	self := ready["peer"].(string)
	if ready["name"] != "alice" || ready["key"] != "" || len(ready["addrs"].([]any)) == 0 {
		t.Errorf("ready = %v", ready)
	}
	if j := p.next("room-joined", isType("room-joined")); j["room"] != "lobby" || j["current"] != true {
		t.Errorf("room-joined = %v", j)
	}

	p.send("members")
	m := p.next("members", isType("members"))
	members := m["members"].([]any)
	if len(members) != 1 {
		t.Fatalf("members = %v, want just self", members)
	}
	me := members[0].(map[string]any)
	if me["peer"] != self || me["name"] != "alice" || me["self"] != true || me["meta"].(map[string]any)["color"] != "red" {
		t.Errorf("self member = %v", me)
	}
	p.next("ok members", isOK("members"))

	p.send(`set cursor {"x": 1}`)
	p.next("ok set", isOK("set"))
	pres := p.next("local presence", isType("presence"))
	if pres["key"] != "cursor" || pres["cause"] != "local" || pres["self"] != true || pres["peer"] != self {
		t.Errorf("presence = %v", pres)
	}
	if v, _ := json.Marshal(pres["value"]); string(v) != `{"x":1}` {
		t.Errorf("presence value = %s", v)
	}

	// Malformed JSON and unknown rooms are errors; the node keeps running.
	p.send(`set cursor {"x":`)
	if e := p.next("error", isType("error")); e["command"] != "set" || !strings.Contains(e["error"].(string), "malformed JSON") {
		t.Errorf("error = %v", e)
	}
	p.send("use nowhere")
	if e := p.next("error", isType("error")); !strings.Contains(e["error"].(string), `not in room "nowhere"`) {
		t.Errorf("error = %v", e)
	}
	p.send("join bad/room")
	if e := p.next("error", isType("error")); !strings.Contains(e["error"].(string), "invalid room id") {
		t.Errorf("error = %v", e)
	}
	p.send("dance")
	p.next("unknown command error", isType("error"))

	p.send("state")
	st := p.next("state", isType("state"))
	peers := st["peers"].([]any)
	if len(peers) != 1 {
		t.Fatalf("state peers = %v", peers)
	}
	if v, _ := json.Marshal(peers[0].(map[string]any)["state"]); string(v) != `{"cursor":{"x":1}}` {
		t.Errorf("state = %s", v)
	}

	p.send("join game")
	if j := p.next("room-joined game", isType("room-joined")); j["room"] != "game" || j["current"] != false {
		t.Errorf("room-joined = %v", j)
	}
	p.send("say @game hello")
	p.next("ok say", isOK("say"))
	p.send("use game")
	if c := p.next("current", isType("current")); c["room"] != "game" {
		t.Errorf("current = %v", c)
	}
	p.send("rooms")
	r := p.next("rooms", isType("rooms"))
	if r["current"] != "game" || len(r["rooms"].([]any)) != 2 {
		t.Errorf("rooms = %v", r)
	}
	p.send("leave")
	if l := p.next("room-left", isType("room-left")); l["room"] != "game" {
		t.Errorf("room-left = %v", l)
	}
	if c := p.next("current after leave", isType("current")); c["room"] != "lobby" {
		t.Errorf("current = %v", c)
	}
	p.send("del cursor")
	p.next("ok del", isOK("del"))

	p.stdin.Close() // EOF: leave and exit 0
	p.next("room-left at exit", func(m map[string]any) bool { return m["type"] == "room-left" && m["room"] == "lobby" })
	if s := p.next("stopped", isType("stopped")); s["reason"] != "eof" {
		t.Errorf("stopped = %v", s)
	}
	if code := <-p.code; code != 0 {
		t.Errorf("exit code %d, want 0 (stderr %q)", code, p.stderr.String())
	}
	<-p.done
	p.checkOutput()
}

func TestRunInProcessQuitAndSignal(t *testing.T) {
	p := startInProcess(t, "--json", "--ephemeral", "--no-mdns", "--dht", "off", "--listen", "/ip4/127.0.0.1/tcp/0", "--room", "lobby")
	p.next("room-joined", isType("room-joined"))
	p.send("quit")
	if s := p.next("stopped", isType("stopped")); s["reason"] != "quit" {
		t.Errorf("stopped = %v", s)
	}
	if code := <-p.code; code != 0 {
		t.Errorf("quit: exit %d", code)
	}

	p = startInProcess(t, "--json", "--ephemeral", "--no-mdns", "--dht", "off", "--listen", "/ip4/127.0.0.1/tcp/0", "--room", "lobby", "--stay")
	p.next("room-joined", isType("room-joined"))
	// With --stay, EOF does not stop the node (TestProcessStayIgnoresEOF
	// shows it still working after EOF); a signal does.
	p.stdin.Close()
	p.cancel() // what SIGINT/SIGTERM do
	if s := p.next("stopped", isType("stopped")); s["reason"] != "signal" {
		t.Errorf("stopped = %v, want reason signal", s)
	}
	if code := <-p.code; code != 0 {
		t.Errorf("signal: exit %d", code)
	}
}

func TestRunInProcessHumanOutput(t *testing.T) {
	p := startInProcess(t, "--ephemeral", "--no-mdns", "--dht", "off", "--listen", "/ip4/127.0.0.1/tcp/0", "--name", "alice", "--room", "lobby")
	p.waitLine(20*time.Second, "[lobby] joined (current room)")
	p.send("set cursor {bad")
	p.send("say hello there")
	p.stdin.Close()
	if code := <-p.code; code != 0 {
		t.Errorf("exit %d", code)
	}
	p.waitLine(20*time.Second, "stopped (eof)")
	out := "\n" + p.output()
	for _, w := range []string{"peer 12D3KooW", "  listening /ip4/127.0.0.1/tcp/", "[lobby] joined (current room)", "[lobby] alice (…", "[lobby] left", "stopped (eof)"} {
		if !strings.Contains(out, "\n"+w) {
			t.Errorf("no line starting with %q in output:%s", w, out)
		}
	}
	if !strings.Contains(out, ") [you] says: hello there\n") {
		t.Errorf("no local echo of say in text mode:%s", out)
	}
	if s := p.stderr.String(); !strings.Contains(s, "error: set cursor: malformed JSON value") {
		t.Errorf("stderr = %q, want the command error there", s)
	}
}

// A wait that nobody answers is an error event naming the command and what
// it waited for, and the node keeps running; bad wait input is an error
// too; SIGINT/SIGTERM (ctx) cuts a wait short with a clean stop.
func TestRunWaitCommandErrors(t *testing.T) {
	p := startInProcess(t, "--json", "--ephemeral", "--no-mdns", "--dht", "off", "--listen", "/ip4/127.0.0.1/tcp/0", "--room", "lobby")
	p.next("room-joined", isType("room-joined"))
	for _, tc := range []struct{ line, want string }{
		{"wait 1 200ms", `wait: timed out after 200ms in room "lobby": 0 other members, want 1`},
		{"wait 2 nope", `wait: "nope" is neither a count nor a timeout with a unit such as 10s`},
		{"wait 0", `wait: count "0": want a whole number of other members, at least 1`},
		{"wait @elsewhere", `wait: not in room "elsewhere"`},
	} {
		p.send(tc.line)
		ev := p.next("error for "+tc.line, isType("error"))
		if ev["command"] != "wait" || !strings.Contains(ev["error"].(string), tc.want) {
			t.Errorf("%q: error event %v, want command wait and %q", tc.line, ev, tc.want)
		}
	}
	p.send("rooms")
	p.next("rooms still answered", isOK("rooms"))

	p.send("wait 1 1m")
	p.cancel() // what SIGINT/SIGTERM do
	if s := p.next("stopped", isType("stopped")); s["reason"] != "signal" {
		t.Errorf("stopped = %v, want reason signal", s)
	}
	if code := <-p.code; code != 0 {
		t.Errorf("exit %d after a signal during wait, want 0", code)
	}
}

// The limits docs/CLI.md states (1 KiB value, 64-byte key, 32 keys, about
// 64 KiB for a say) are errors at the command, and the node keeps running.
func TestRunDocumentedLimitsAreErrors(t *testing.T) {
	p := startInProcess(t, "--json", "--ephemeral", "--no-mdns", "--dht", "off", "--listen", "/ip4/127.0.0.1/tcp/0", "--room", "lobby")
	p.next("room-joined", isType("room-joined"))
	ok := func(line, cmd string) {
		t.Helper()
		p.send(line)
		if ev := p.next(cmd+" answer", func(m map[string]any) bool { return m["type"] == "ok" || m["type"] == "error" }); ev["type"] != "ok" {
			t.Errorf("%.40q: %v, want ok", line, ev)
		}
	}
	fails := func(line, cmd string) {
		t.Helper()
		p.send(line)
		if ev := p.next(cmd+" answer", func(m map[string]any) bool { return m["type"] == "ok" || m["type"] == "error" }); ev["type"] != "error" || ev["command"] != cmd {
			t.Errorf("%.40q: %v, want an error", line, ev)
		}
	}
	ok(`set v "`+strings.Repeat("x", 1022)+`"`, "set") // 1024 bytes of JSON
	fails(`set v "`+strings.Repeat("x", 1023)+`"`, "set")
	ok("set "+strings.Repeat("k", 64)+" 1", "set")
	fails("set "+strings.Repeat("k", 65)+" 1", "set")
	for i := 2; i < 32; i++ { // v and the 64-byte key are two of the 32
		ok(fmt.Sprintf("set k%d %d", i, i), "set")
	}
	fails("set one-too-many 1", "set")
	ok("say "+strings.Repeat("y", 60<<10), "say")
	fails("say "+strings.Repeat("y", 64<<10), "say")
	p.send("rooms")
	p.next("still running", isOK("rooms"))
}
