package main

// Scripted nodes (issue 9, item 5): a node fed a script on stdin waits
// until it has met the room, and what it wrote reaches the others before
// its goodbye. These tests run real `peer` processes on loopback, through
// sh, with the command lines docs/CLI.md shows.

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// documentedScript returns the script line of docs/CLI.md ("A script:"
// under Typical uses): printf '...' | peer run ...
func documentedScript(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "CLI.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^printf '[^']*' \| peer run [^\n]*$`).FindAllString(string(doc), -1)
	if len(m) != 1 {
		t.Fatalf("docs/CLI.md has %d lines of the form printf '...' | peer run ..., want exactly 1: %q", len(m), m)
	}
	return m[0]
}

// runScript runs line (a shell pipeline calling `peer`) with extra
// arguments appended to its peer command, with the built binary first on
// PATH and a fresh config directory, and returns its NDJSON output and
// exit code. The process is killed if it runs longer than timeout.
func runScript(t *testing.T, line string, timeout time.Duration, extra ...string) (*eventLog, int) {
	t.Helper()
	return runScriptIn(t, "", line, timeout, extra...)
}

// runScriptIn is runScript in network namespace ns ("" for the test's own).
func runScriptIn(t *testing.T, ns, line string, timeout time.Duration, extra ...string) (*eventLog, int) {
	t.Helper()
	bin := peerBinary(t)
	full := strings.TrimSpace(line + " " + strings.Join(extra, " "))
	cmd := exec.Command("sh", "-c", full)
	if ns != "" {
		cmd = exec.Command("ip", "netns", "exec", ns, "sh", "-c", full)
	}
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"), "XDG_CONFIG_HOME="+t.TempDir(), "GOLOG_LOG_LEVEL=")
	log := newEventLog(t, "script")
	cmd.Stderr = log.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	code := make(chan int, 1)
	go log.read(stdout, func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			code <- 0
		case errors.As(err, &ee):
			code <- ee.ExitCode()
		default:
			code <- -1
		}
	})
	select {
	case c := <-code:
		return log, c
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-log.done
		t.Fatalf("%q did not exit within %v; output:\n%s\nstderr: %s", full, timeout, log.output(), log.stderr.String())
		return nil, -1
	}
}

// loopbackFlags connect a script's node to a listening test peer without
// mDNS (the test machine's LAN is not ours to use).
func loopbackFlags(boot string) []string {
	return []string{"--no-mdns", "--dht", "off", "--listen", "/ip4/127.0.0.1/tcp/0", "--timeout", "3s", "--bootstrap", boot}
}

// TestProcessDocumentedScriptReachesListener runs the script of docs/CLI.md
// as written (plus the flags that connect it over loopback) against a
// listening peer: the listener gets the script's presence and its
// broadcast, then its goodbye; the script exits 0 having printed ok for
// each command. Before the wait command the node said hello to an empty
// room and left before anyone had met it.
func TestProcessDocumentedScriptReachesListener(t *testing.T) {
	const wait = 20 * time.Second
	line := documentedScript(t)
	if !strings.Contains(line, "--name bot") || !strings.Contains(line, "--room lobby") {
		t.Fatalf("documented script %q: the test expects --name bot --room lobby", line)
	}
	alice := startPeer(t, "alice", "--ephemeral", "--room", "lobby")
	boot := tcpAddr(t, alice.wait(wait, "alice ready", isType("ready")))
	alice.wait(wait, "alice joined lobby", isType("room-joined"))

	script, code := runScript(t, line, 2*wait, loopbackFlags(boot)...)
	if code != 0 {
		t.Fatalf("script exit code %d, want 0; stderr %q; output:\n%s", code, script.stderr.String(), script.output())
	}
	script.checkOutput()
	botID := script.wait(wait, "bot ready", isType("ready"))["peer"]
	var oks []string
	for _, ev := range script.events {
		if ev["type"] == "ok" {
			oks = append(oks, ev["command"].(string))
		}
		if ev["type"] == "error" {
			t.Errorf("script printed an error: %v", ev)
		}
	}
	if got := strings.Join(oks, ","); got != "wait,set,say" {
		t.Errorf("script's ok events = %s, want wait,set,say (one per command)", got)
	}
	if ev := script.wait(wait, "stopped", isType("stopped")); ev["reason"] != "eof" {
		t.Errorf("script stopped = %v, want reason eof", ev)
	}

	pres := alice.wait(wait, "the bot's status", func(m map[string]any) bool {
		return m["type"] == "presence" && m["peer"] == botID && m["key"] == "status" && m["cause"] == "remote"
	})
	if v, _ := json.Marshal(pres["value"]); string(v) != `"busy"` {
		t.Errorf("alice got status %s from the bot, want \"busy\"", v)
	}
	if ev := alice.wait(wait, "the bot's hello", func(m map[string]any) bool {
		return m["type"] == "broadcast" && m["peer"] == botID
	}); ev["text"] != "hello" || ev["room"] != "lobby" {
		t.Errorf("alice got broadcast %v, want hello in lobby", ev)
	}
	if ev := alice.wait(wait, "the bot's goodbye", memberLeft("lobby", botID.(string))); ev["reason"] != "left" {
		t.Errorf("bot left alice's room with reason %v, want left", ev["reason"])
	}
	alice.checkOutput()
}

// TestProcessScriptFlushesLastWriteBeforeGoodbye: three quick writes of one
// key, then end of input. The room paces presence writes, so the last one
// is still waiting for its turn when the script ends; the node must send it
// before the goodbye, and the listener must see the final value. (Without
// the flush the goodbye dropped it: the listener saw only the first.)
func TestProcessScriptFlushesLastWriteBeforeGoodbye(t *testing.T) {
	const wait = 20 * time.Second
	alice := startPeer(t, "alice", "--ephemeral", "--room", "lobby")
	boot := tcpAddr(t, alice.wait(wait, "alice ready", isType("ready")))
	alice.wait(wait, "alice joined lobby", isType("room-joined"))

	script, code := runScript(t, `printf 'wait\nset n 1\nset n 2\nset n 3\n' | peer run --json --ephemeral --name bot --room lobby`, 2*wait, loopbackFlags(boot)...)
	if code != 0 {
		t.Fatalf("script exit code %d; stderr %q; output:\n%s", code, script.stderr.String(), script.output())
	}
	botID := script.wait(wait, "bot ready", isType("ready"))["peer"].(string)
	_, left := alice.waitIndex(0, wait, "the bot's goodbye", memberLeft("lobby", botID))
	final := false
	alice.mu.Lock()
	var seen []string
	for _, ev := range alice.events[:left] {
		if ev["type"] == "presence" && ev["peer"] == botID && ev["key"] == "n" && ev["cause"] == "remote" {
			v, _ := json.Marshal(ev["value"])
			seen = append(seen, string(v))
			final = final || string(v) == "3"
		}
	}
	alice.mu.Unlock()
	if !final {
		t.Errorf("alice saw n = %v from the bot before its goodbye, want the last value 3 among them", seen)
	}
}

// TestProcessWaitMembersTimesOutExit3: --wait-members with nobody else in
// the room ends the node after --wait-timeout with exit code 3, an error
// event saying what it waited for, a goodbye (room-left) and stopped
// (reason wait-timeout); the script's commands are not run.
func TestProcessWaitMembersTimesOutExit3(t *testing.T) {
	const timeout = 500 * time.Millisecond
	start := time.Now()
	script, code := runScript(t, `printf 'say nobody hears this\n' | peer run --json --ephemeral --name bot --room lobby --wait-members 1 --wait-timeout 500ms --no-mdns --dht off --listen /ip4/127.0.0.1/tcp/0`, 30*time.Second)
	took := time.Since(start)
	if code != exitWait {
		t.Fatalf("exit code %d, want %d; stderr %q; output:\n%s", code, exitWait, script.stderr.String(), script.output())
	}
	if took < timeout {
		t.Errorf("exited after %v, before its --wait-timeout %v", took, timeout)
	}
	script.checkOutput()
	ev := script.wait(time.Second, "error", isType("error"))
	if msg := ev["error"].(string); !strings.Contains(msg, `--wait-members: timed out after 500ms in room "lobby": 0 other members, want 1`) {
		t.Errorf("error = %q", msg)
	}
	script.wait(time.Second, "room-left", isType("room-left"))
	if ev := script.wait(time.Second, "stopped", isType("stopped")); ev["reason"] != "wait-timeout" {
		t.Errorf("stopped = %v, want reason wait-timeout", ev)
	}
	for _, ev := range script.events {
		if ev["type"] == "ok" {
			t.Errorf("a command ran although the wait failed: %v", ev)
		}
	}
}

// TestProcessWaitMembersFlag: with --wait-members 2 the script's say runs
// only once both listeners are members, and both get it.
func TestProcessWaitMembersFlag(t *testing.T) {
	const wait = 20 * time.Second
	alice := startPeer(t, "alice", "--ephemeral", "--room", "lobby")
	boot := tcpAddr(t, alice.wait(wait, "alice ready", isType("ready")))
	carol := startPeer(t, "carol", "--ephemeral", "--room", "lobby", "--bootstrap", boot)
	carol.wait(wait, "carol sees alice", memberJoined("lobby", "alice"))

	script, code := runScript(t, `printf 'say hi both\n' | peer run --json --ephemeral --name bot --room lobby --wait-members 2`, 2*wait, loopbackFlags(boot)...)
	if code != 0 {
		t.Fatalf("script exit code %d; stderr %q; output:\n%s", code, script.stderr.String(), script.output())
	}
	botID := script.wait(wait, "bot ready", isType("ready"))["peer"]
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bot:\n%s", script.output())
		}
	})
	for _, p := range []*proc{alice, carol} {
		p.wait(wait, "the bot's line", func(m map[string]any) bool {
			return m["type"] == "broadcast" && m["peer"] == botID && m["text"] == "hi both"
		})
	}
}

// TestProcessDocumentedScriptOverMDNS runs the script of docs/CLI.md exactly
// as written, with no extra flag: in a fresh network namespace whose lo has
// the MULTICAST flag (so mDNS works on it, as on a LAN), next to a
// listening peer started with mDNS on and no address. The script finds the
// listener by mDNS, waits for it, and its presence and broadcast reach it.
func TestProcessDocumentedScriptOverMDNS(t *testing.T) {
	const wait = 20 * time.Second
	bin := peerBinary(t)
	ns := netns(t, "cvscript", true)
	line := documentedScript(t)

	cmd := exec.Command("ip", "netns", "exec", ns, bin, "run", "--json", "--ephemeral", "--name", "alice", "--room", "lobby")
	cmd.Env = append(os.Environ(), "GOLOG_LOG_LEVEL=")
	alice := startCmd(t, "alice", cmd)
	alice.wait(wait, "alice joined lobby", isType("room-joined"))

	script, code := runScriptIn(t, ns, line, 2*wait)
	if code != 0 {
		t.Fatalf("%q: exit code %d; stderr %q; output:\n%s", line, code, script.stderr.String(), script.output())
	}
	for _, ev := range script.events {
		if ev["type"] == "error" {
			t.Errorf("script printed an error: %v", ev)
		}
	}
	botID := script.wait(wait, "bot ready", isType("ready"))["peer"]
	pres := alice.wait(wait, "the bot's status", func(m map[string]any) bool {
		return m["type"] == "presence" && m["peer"] == botID && m["key"] == "status" && m["cause"] == "remote"
	})
	if v, _ := json.Marshal(pres["value"]); string(v) != `"busy"` {
		t.Errorf("alice got status %s from the bot, want \"busy\"", v)
	}
	alice.wait(wait, "the bot's hello", func(m map[string]any) bool {
		return m["type"] == "broadcast" && m["peer"] == botID && m["text"] == "hello"
	})
	alice.wait(wait, "the bot's goodbye", memberLeft("lobby", botID.(string)))
}
