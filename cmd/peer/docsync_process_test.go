package main

import (
	"encoding/json"
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
	aliceID, boot := ready["peer"].(string), tcpAddr(t, ready)
	alice.wait(wait, "alice opened notes", isType("doc-opened"))

	bob := startPeer(t, "bob", "--key", filepath.Join(dir, "kb"), "--data", filepath.Join(dir, "b"), "--doc", "notes", "--bootstrap", boot)
	bobID := bob.wait(wait, "bob ready", isType("ready"))["peer"].(string)
	bob.wait(wait, "bob opened notes", isType("doc-opened"))
	bob.wait(wait, "bob connected", isType("connected"))

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
