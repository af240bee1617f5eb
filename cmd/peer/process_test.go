package main

// Process-level tests (STYLE.md layer 4): build the peer binary, run
// several nodes on 127.0.0.1 connected with --bootstrap, drive them through
// stdin and read their --json output.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	binDir    string
	buildErr  error
)

// peerBinary builds cmd/peer once per test run.
func peerBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("process tests build and run the binary; skipped with -short")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "peer-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "peer")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is one running `peer run --json`.
type proc struct {
	*eventLog
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	exitCode int // valid once done is closed
}

// startPeer starts `peer run --json` with test defaults (loopback TCP, no
// mDNS, no DHT, a 3 s room timeout) plus args.
func startPeer(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	bin := peerBinary(t)
	all := append([]string{"run", "--json", "--no-mdns", "--dht", "off", "--listen", "/ip4/127.0.0.1/tcp/0", "--timeout", "3s", "--name", name}, args...)
	cmd := exec.Command(bin, all...)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+t.TempDir(), "GOLOG_LOG_LEVEL=")
	return startCmd(t, name, cmd)
}

// startCmd starts cmd, a `peer run --json` however it is invoked (in a
// network namespace, say), and reads its output like startPeer.
func startCmd(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{eventLog: newEventLog(t, name), cmd: cmd}
	cmd.Stderr = p.stderr
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
	// The reader is the only goroutine per proc; it reaps the process after
	// stdout ends, and the cleanup waits for it.
	go p.read(stdout, func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			p.exitCode = 0
		case errors.As(err, &ee):
			p.exitCode = ee.ExitCode()
		default:
			p.exitCode = -1
		}
	})
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("%s: write %q: %v", p.name, line, err)
	}
}

// waitExit waits for the process to exit and returns its exit code.
func (p *proc) waitExit(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.exitCode
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v; output:\n%s", p.name, timeout, p.output())
		return -1
	}
}

func memberJoined(room, name string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		return m["type"] == "member-joined" && m["room"] == room && m["name"] == name
	}
}

func memberLeft(room, peer string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		return m["type"] == "member-left" && m["room"] == room && m["peer"] == peer
	}
}

func tcpAddr(t *testing.T, ready map[string]any) string {
	t.Helper()
	for _, a := range ready["addrs"].([]any) {
		if s := a.(string); strings.HasPrefix(s, "/ip4/127.0.0.1/tcp/") {
			return s
		}
	}
	t.Fatalf("no loopback TCP address in %v", ready["addrs"])
	return ""
}

// TestProcessThreePeers runs three peer processes and checks the issue's
// scenario end to end: they see each other by name; presence and
// broadcasts travel; malformed input is an error line; leave and EOF are
// seen as reason left; kill -9 as reason timeout within timeout plus a
// heartbeat; a restart with the same key is one member again; SIGTERM is a
// clean goodbye.
func TestProcessThreePeers(t *testing.T) {
	const timeout = 3 * time.Second // --timeout of every peer
	const wait = 15 * time.Second   // generous bound for ordinary delivery
	dir := t.TempDir()
	peerBinary(t) // build first: the timings below are the peers' own
	start := time.Now()

	alice := startPeer(t, "alice", "--key", filepath.Join(dir, "alice"), "--room", "lobby")
	ready := alice.wait(wait, "alice ready", isType("ready"))
	aliceID, boot := ready["peer"].(string), tcpAddr(t, ready)

	bobKey := filepath.Join(dir, "bob")
	bob := startPeer(t, "bob", "--key", bobKey, "--room", "lobby", "--bootstrap", boot)
	carol := startPeer(t, "carol", "--key", filepath.Join(dir, "carol"), "--room", "lobby", "--bootstrap", boot)
	bobID := bob.wait(wait, "bob ready", isType("ready"))["peer"].(string)
	carolID := carol.wait(wait, "carol ready", isType("ready"))["peer"].(string)
	for _, p := range []*proc{bob, carol} {
		if c := p.wait(wait, "connected", isType("connected")); c["peer"] != aliceID {
			t.Errorf("%s connected to %v, want alice %s", p.name, c["peer"], aliceID)
		}
	}

	// Everyone sees the two others, by name and peer ID.
	ids := map[string]string{"alice": aliceID, "bob": bobID, "carol": carolID}
	for _, p := range []*proc{alice, bob, carol} {
		for other, id := range ids {
			if other == p.name {
				continue
			}
			ev := p.wait(wait, other+" joined", memberJoined("lobby", other))
			if ev["peer"] != id || ev["self"] != false {
				t.Errorf("%s sees %s as %v", p.name, other, ev)
			}
		}
	}
	t.Logf("3 peers see each other after %v", time.Since(start).Round(time.Millisecond))

	// Presence: bob's cursor reaches alice and carol under bob's ID.
	mA, mC := alice.mark(), carol.mark()
	bob.send(`set cursor {"x":1}`)
	bob.wait(wait, "ok set", isOK("set"))
	for _, w := range []struct {
		p    *proc
		from int
	}{{alice, mA}, {carol, mC}} {
		ev := w.p.waitFrom(w.from, wait, "bob's cursor", func(m map[string]any) bool {
			return m["type"] == "presence" && m["key"] == "cursor" && m["peer"] == bobID
		})
		if v, _ := json.Marshal(ev["value"]); string(v) != `{"x":1}` || ev["cause"] != "remote" || ev["name"] != "bob" {
			t.Errorf("%s saw %v", w.p.name, ev)
		}
	}

	// Broadcast: alice says hi to bob and carol.
	alice.send("say hi")
	alice.wait(wait, "ok say", isOK("say"))
	for _, p := range []*proc{bob, carol} {
		ev := p.wait(wait, "alice's broadcast", isType("broadcast"))
		if ev["text"] != "hi" || ev["peer"] != aliceID || ev["name"] != "alice" || ev["room"] != "lobby" {
			t.Errorf("%s saw %v", p.name, ev)
		}
	}

	// Malformed JSON on stdin: an error event, and carol keeps working.
	mC = carol.mark()
	carol.send(`set cursor {bad`)
	if ev := carol.waitFrom(mC, wait, "error", isType("error")); ev["command"] != "set" || !strings.Contains(ev["error"].(string), "malformed JSON") {
		t.Errorf("carol error = %v", ev)
	}
	carol.send("members")
	if ev := carol.waitFrom(mC, wait, "members", isType("members")); len(ev["members"].([]any)) != 3 {
		t.Errorf("carol members = %v, want 3", ev["members"])
	}

	// leave: the others see reason left at once.
	mA, mB := alice.mark(), bob.mark()
	carol.send("leave")
	carol.wait(wait, "room-left", isType("room-left"))
	for _, w := range []struct {
		p    *proc
		from int
	}{{alice, mA}, {bob, mB}} {
		if ev := w.p.waitFrom(w.from, wait, "carol left", memberLeft("lobby", carolID)); ev["reason"] != "left" {
			t.Errorf("%s: carol left with %v, want left", w.p.name, ev["reason"])
		}
	}

	// Rejoin, then end carol's input: goodbye (reason left) and exit 0.
	mA, mB = alice.mark(), bob.mark()
	carol.send("join lobby")
	alice.waitFrom(mA, wait, "carol back", memberJoined("lobby", "carol"))
	bob.waitFrom(mB, wait, "carol back", memberJoined("lobby", "carol"))
	mA, mB = alice.mark(), bob.mark()
	carol.stdin.Close()
	if code := carol.waitExit(wait); code != 0 {
		t.Errorf("carol exit code %d after EOF, want 0; stderr %q", code, carol.stderr.String())
	}
	if ev := carol.wait(wait, "stopped", isType("stopped")); ev["reason"] != "eof" {
		t.Errorf("carol stopped = %v", ev)
	}
	for _, w := range []struct {
		p    *proc
		from int
	}{{alice, mA}, {bob, mB}} {
		if ev := w.p.waitFrom(w.from, wait, "carol left at EOF", memberLeft("lobby", carolID)); ev["reason"] != "left" {
			t.Errorf("%s: carol left with %v at EOF, want left", w.p.name, ev["reason"])
		}
	}
	carol.checkOutput()

	// kill -9: alice sees bob time out within timeout + heartbeat (+ slack
	// for process scheduling on a loaded 2-core machine).
	mA = alice.mark()
	killed := time.Now()
	if err := bob.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	bob.waitExit(wait)
	ev := alice.waitFrom(mA, timeout+timeout/3+5*time.Second, "bob timed out", memberLeft("lobby", bobID))
	took := time.Since(killed)
	if ev["reason"] != "timeout" {
		t.Errorf("killed bob left with %v, want timeout", ev["reason"])
	}
	t.Logf("kill -9 -> member-left timeout after %v (timeout %v)", took.Round(time.Millisecond), timeout)
	bob.checkOutput()

	// Restart bob with the same key: same peer ID, one member again.
	mA = alice.mark()
	bob2 := startPeer(t, "bob", "--key", bobKey, "--room", "lobby", "--bootstrap", boot)
	if id := bob2.wait(wait, "bob ready", isType("ready"))["peer"]; id != bobID {
		t.Errorf("restarted bob has ID %v, want %s (same key)", id, bobID)
	}
	alice.waitFrom(mA, wait, "bob back", memberJoined("lobby", "bob"))
	bob2.wait(wait, "alice seen by new bob", memberJoined("lobby", "alice"))
	mA = alice.mark()
	alice.send("members")
	members := alice.waitFrom(mA, wait, "members", isType("members"))["members"].([]any)
	var got []string
	for _, m := range members {
		got = append(got, m.(map[string]any)["name"].(string))
	}
	if len(members) != 2 || !strings.Contains(strings.Join(got, ","), "bob") {
		t.Errorf("alice's members after bob's restart = %v, want alice and bob once each", got)
	}

	// SIGTERM: alice says goodbye (bob sees reason left) and exits 0.
	mB = bob2.mark()
	if err := alice.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := alice.waitExit(wait); code != 0 {
		t.Errorf("alice exit code %d after SIGTERM, want 0", code)
	}
	if ev := alice.wait(wait, "stopped", isType("stopped")); ev["reason"] != "signal" {
		t.Errorf("alice stopped = %v", ev)
	}
	if ev := bob2.waitFrom(mB, wait, "alice left", memberLeft("lobby", aliceID)); ev["reason"] != "left" {
		t.Errorf("alice left with %v after SIGTERM, want left", ev["reason"])
	}
	alice.checkOutput()
	bob2.stdin.Close()
	if code := bob2.waitExit(wait); code != 0 {
		t.Errorf("bob exit code %d", code)
	}
	bob2.checkOutput()
	t.Logf("whole scenario took %v", time.Since(start).Round(time.Millisecond))
}

// TestProcessStayIgnoresEOF: with --stay and stdin at EOF from the start
// (a daemon), the node keeps running: it still reports a presence change
// made by another peer after it read EOF, and exits 0 on SIGINT.
func TestProcessStayIgnoresEOF(t *testing.T) {
	const wait = 15 * time.Second
	dir := t.TempDir()
	daemon := startPeer(t, "daemon", "--key", filepath.Join(dir, "d"), "--room", "lobby", "--stay")
	daemon.stdin.Close()
	boot := tcpAddr(t, daemon.wait(wait, "ready", isType("ready")))
	daemon.wait(wait, "room-joined", isType("room-joined"))

	other := startPeer(t, "other", "--key", filepath.Join(dir, "o"), "--room", "lobby", "--bootstrap", boot)
	other.wait(wait, "daemon seen", memberJoined("lobby", "daemon"))
	daemon.wait(wait, "other seen", memberJoined("lobby", "other"))
	other.send(`set status "here"`)
	daemon.wait(wait, "presence after EOF", func(m map[string]any) bool {
		return m["type"] == "presence" && m["key"] == "status" && m["cause"] == "remote"
	})
	if err := daemon.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := daemon.waitExit(wait); code != 0 {
		t.Errorf("daemon exit code %d after SIGINT, want 0", code)
	}
	if ev := daemon.wait(wait, "stopped", isType("stopped")); ev["reason"] != "signal" {
		t.Errorf("stopped = %v", ev)
	}
	other.stdin.Close()
	other.waitExit(wait)
	daemon.checkOutput()
	other.checkOutput()
}

// TestProcessStartErrors runs the binary with bad command lines and bad
// key files: exit 2 or 1, exactly one line on stderr, no stack trace.
func TestProcessStartErrors(t *testing.T) {
	bin := peerBinary(t)
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt")
	if err := os.WriteFile(corrupt, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad flag", []string{"run", "--frobnicate"}, 2, "flag provided but not defined"},
		{"bad multiaddr", []string{"run", "--bootstrap", "not-an-address"}, 2, "--bootstrap"},
		{"invalid room", []string{"run", "--ephemeral", "--room", "x/y"}, 2, "invalid room id"},
		{"bad dht", []string{"run", "--dht", "always"}, 2, "--dht"},
		{"unknown command", []string{"serve"}, 2, "unknown command"},
		{"corrupt key", []string{"run", "--key", corrupt, "--no-mdns", "--dht", "off", "--listen", "/ip4/127.0.0.1/tcp/0"}, 1, "corrupt"},
		{"key is a directory", []string{"run", "--key", dir, "--no-mdns", "--dht", "off", "--listen", "/ip4/127.0.0.1/tcp/0"}, 1, "key file"},
		{"id without key", []string{"id", "--key", filepath.Join(dir, "none")}, 1, "no key file"},
		// 192.0.2.1 (TEST-NET-1) is not an address of this machine. (Not an
		// in-process test: a failed libp2p.New leaks goroutines.)
		{"unbindable listen address", []string{"run", "--ephemeral", "--no-mdns", "--dht", "off", "--listen", "/ip4/192.0.2.1/tcp/0"}, 1, "cannot start the node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+dir)
			var stdout, stderr syncBuffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != tc.code {
				t.Errorf("err = %v, want exit code %d", err, tc.code)
			}
			assertOneLineError(t, stdout.String(), stderr.String(), tc.want)
		})
	}
}
