package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// docChangedBy matches a doc-changed event of document id whose origin is
// peer.
func docChangedBy(id, peer string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		return m["type"] == "doc-changed" && m["doc"] == id && m["origin"] == peer
	}
}

// docValue matches the doc-value event of document id and returns its
// value as compact JSON.
func docValueJSON(t *testing.T, p *proc, from int, id string) string {
	t.Helper()
	ev := p.waitFrom(from, 15*time.Second, "doc-value of "+id, func(m map[string]any) bool {
		return m["type"] == "doc-value" && m["doc"] == id
	})
	b, err := json.Marshal(ev["value"])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func lastHeads(p *proc, id string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.events) - 1; i >= 0; i-- {
		m := p.events[i]
		if (m["type"] == "doc-changed" || m["type"] == "doc-opened") && m["doc"] == id {
			var out []string
			for _, h := range m["heads"].([]any) {
				out = append(out, h.(string))
			}
			slices.Sort(out)
			return out
		}
	}
	return nil
}

// Two peer processes on one machine, connected with --bootstrap, each with
// its own bbolt store and document "notes" open (--doc): a change on
// either reaches the other with no further command (doc-changed with the
// author's peer ID as origin), both ways, and both end with the same
// content and heads.
func TestProcessDocumentSyncsBothWays(t *testing.T) {
	const wait = 20 * time.Second
	dir := t.TempDir()
	alice := startPeer(t, "alice", "--key", filepath.Join(dir, "ka"), "--data", filepath.Join(dir, "a"), "--doc", "notes")
	ready := alice.wait(wait, "alice ready", isType("ready"))
	boot := tcpAddr(t, ready)
	bob := startPeer(t, "bob", "--key", filepath.Join(dir, "kb"), "--data", filepath.Join(dir, "b"), "--doc", "notes", "--bootstrap", boot)
	bob.wait(wait, "bob connected", isType("connected"))
	docBothWays(t, alice, bob, wait)
}

// The same over mDNS: two peer processes in a network namespace of their
// own, no bootstrap address, no DHT: they find each other by mDNS and
// share the document both ways.
func TestProcessDocumentSyncsBothWaysOverMDNS(t *testing.T) {
	const wait = 20 * time.Second
	bin := peerBinary(t)
	ns := netns(t, "cvdocmdns", true)
	dir := t.TempDir()
	start := func(name, key, data string) *proc {
		cmd := exec.Command("ip", "netns", "exec", ns, bin, "run", "--json", "--dht", "off",
			"--timeout", "3s", "--name", name, "--key", filepath.Join(dir, key), "--data", filepath.Join(dir, data), "--doc", "notes")
		cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+t.TempDir(), "GOLOG_LOG_LEVEL=")
		return startCmd(t, name, cmd)
	}
	alice := start("alice", "ka", "a")
	alice.wait(wait, "alice ready", isType("ready"))
	bob := start("bob", "kb", "b")
	docBothWays(t, alice, bob, wait)
}

// docBothWays: alice (started) and bob (started, connecting to alice
// by bootstrap or mDNS: a change reaches the other only once they are) have both opened "notes"; a change on each reaches the other,
// both end with the same content and heads, and both exit cleanly.
func docBothWays(t *testing.T, alice, bob *proc, wait time.Duration) {
	t.Helper()
	aliceID := alice.wait(wait, "alice ready", isType("ready"))["peer"].(string)
	alice.wait(wait, "alice opened notes", isType("doc-opened"))
	bobID := bob.wait(wait, "bob ready", isType("ready"))["peer"].(string)
	bob.wait(wait, "bob opened notes", isType("doc-opened"))

	// alice → bob.
	mB := bob.mark()
	alice.send(`doc set title "from alice"`)
	alice.wait(wait, "ok doc", isOK("doc"))
	bob.waitFrom(mB, wait, "alice's change at bob", docChangedBy("notes", aliceID))
	mB = bob.mark()
	bob.send("doc get title")
	if v := docValueJSON(t, bob, mB, "notes"); v != `"from alice"` {
		t.Errorf("bob's title = %s, want \"from alice\"", v)
	}

	// bob → alice.
	mA := alice.mark()
	bob.send(`doc append items {"by":"bob"}`)
	alice.waitFrom(mA, wait, "bob's change at alice", docChangedBy("notes", bobID))
	mA = alice.mark()
	alice.send("doc show")
	want := `{"items":[{"by":"bob"}],"title":"from alice"}`
	if v := docValueJSON(t, alice, mA, "notes"); v != want {
		t.Errorf("alice's notes = %s, want %s", v, want)
	}
	mB = bob.mark()
	bob.send("doc show")
	if v := docValueJSON(t, bob, mB, "notes"); v != want {
		t.Errorf("bob's notes = %s, want %s", v, want)
	}
	if ha, hb := lastHeads(alice, "notes"), lastHeads(bob, "notes"); !slices.Equal(ha, hb) || len(ha) == 0 {
		t.Errorf("heads differ: alice %v, bob %v", ha, hb)
	}

	for _, p := range []*proc{alice, bob} {
		p.stdin.Close()
		if code := p.waitExit(wait); code != 0 {
			t.Errorf("%s exit code %d; stderr %q", p.name, code, p.stderr.String())
		}
		p.checkOutput()
	}
}

// netns creates a network namespace named prefix-<pid> for the test (lo up;
// with multicast, mDNS works on it) and deletes it at cleanup. It skips
// unless root with iproute2's ip (CI fails instead: skipUnlessCI).
func netns(t *testing.T, prefix string, multicast bool) string {
	t.Helper()
	if os.Geteuid() != 0 {
		skipUnlessCI(t, "needs root to create a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skipUnlessCI(t, "needs iproute2's ip")
	}
	ns := fmt.Sprintf("%s-%d", prefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	steps := [][]string{{"link", "set", "lo", "up"}}
	if multicast {
		steps = [][]string{{"link", "set", "lo", "multicast", "on"}, {"link", "set", "lo", "up"}}
	}
	for _, args := range steps {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	return ns
}
