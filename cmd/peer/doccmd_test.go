package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convene-p2p/convene/doc"
)

func init() {
	// The document events' documented keys (docs/CLI.md), beside schema's.
	schema["doc-opened"] = []string{"type", "time", "doc", "heads"}
	schema["doc-changed"] = []string{"type", "time", "doc", "origin", "heads"}
	schema["doc-value"] = []string{"type", "time", "doc", "path", "value"}
	schema["docs"] = []string{"type", "time", "current", "docs"}
	schema["doc-deleted"] = []string{"type", "time", "doc"}
	schema["doc-lagged"] = []string{"type", "time", "doc", "dropped"}
	samples = append(samples, docSamples...)
}

var docSamples = []event{
	docOpenedEvent{Doc: "notes", Heads: []string{}},
	docChangedEvent{Doc: "notes", Origin: "local", Heads: []string{"ab"}},
	docValueEvent{Doc: "notes", Path: []any{"a", 0}, Value: []byte(`"x"`)},
	docsEvent{Current: "notes", Docs: []string{"notes"}},
	docDeletedEvent{Doc: "notes"},
	docLaggedEvent{Doc: "notes", Dropped: 3},
}

func TestDocEventsMatchSchema(t *testing.T) {
	for _, ev := range docSamples {
		checkSchema(t, encodeEvent(ev, testTime))
		if ev.human() == "" {
			t.Errorf("%s has no human form", ev.eventType())
		}
	}
}

func TestRunUsageDocumentsDocFlags(t *testing.T) {
	for _, f := range []string{"--data", "--no-store"} {
		if !strings.Contains(runUsageText, f) {
			t.Errorf("peer help run does not mention %s", f)
		}
	}
	if !strings.Contains(commandHelp, "doc open") {
		t.Error("help does not list the doc commands")
	}
}

func TestDocFlagsPickTheStore(t *testing.T) {
	cfg := func() (string, error) { return "/cfg", nil }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--key", "k"}, "/cfg/convene/docs.bolt"},
		{[]string{"--name", "bob"}, "/cfg/convene/docs-bob.bolt"},
		{[]string{"--key", "k", "--data", "/d"}, "/d/docs.bolt"},
		{[]string{"--key", "k", "--no-store"}, ""},
		{[]string{"--ephemeral"}, ""},
		{[]string{"--ephemeral", "--data", "/d"}, "/d/docs.bolt"},
	} {
		o, err := parseRunFlags(tc.args, cfg)
		if err != nil || o.Docs.Path != tc.want {
			t.Errorf("%v: store %q %v, want %q", tc.args, o.Docs.Path, err, tc.want)
		}
	}
	_, err := parseRunFlags([]string{"--ephemeral", "--data", "/d", "--no-store"}, cfg)
	var ue *usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "exclude") {
		t.Errorf("--data with --no-store: %v, want a usage error", err)
	}
}

func TestParseDocCommand(t *testing.T) {
	for _, tc := range []struct {
		line string
		want docCommand
	}{
		{"open notes", docCommand{verb: "open", id: "notes"}},
		{"set title \"hi\"", docCommand{verb: "set", path: doc.Path{"title"}, value: "hi"}},
		{"set @n a.b.0 {\"x\": 1}", docCommand{verb: "set", id: "n", path: doc.Path{"a", "b", 0}, value: map[string]any{"x": int64(1)}}},
		{"append [\"a.b\", 2] 1.5", docCommand{verb: "append", path: doc.Path{"a.b", 2}, value: 1.5}},
		{"get", docCommand{verb: "get", path: doc.Path{}}},
		{"get .", docCommand{verb: "get", path: doc.Path{}}},
		{"show @x", docCommand{verb: "show", id: "x"}},
		{"list", docCommand{verb: "list"}},
		{"delete notes", docCommand{verb: "delete", id: "notes"}},
	} {
		got, err := parseDocCommand(tc.line)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q: %+v %v, want %+v", tc.line, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "bogus", "open", "set title", "set a..b 1", "set a {bad", "set a 1 2", "append [1.5] 1", "list x", "delete a b"} {
		if _, err := parseDocCommand(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func isDocValue(id string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["type"] == "doc-value" && m["doc"] == id }
}

// The document commands on stdin, with the bbolt store under --data: what
// one run wrote, the next run reads; a second run on the same store is
// refused while the first holds it.
func TestRunInProcessDocuments(t *testing.T) {
	data := t.TempDir()
	args := []string{"--json", "--ephemeral", "--no-mdns", "--dht", "off", "--listen", "/ip4/127.0.0.1/tcp/0", "--data", data}
	p := startInProcess(t, args...)
	p.next("ready", isType("ready"))
	p.send("doc open notes")
	if ev := p.next("doc-opened", isType("doc-opened")); ev["doc"] != "notes" {
		t.Fatalf("doc-opened = %v", ev)
	}
	p.send(`doc set title "hello"`)
	if ev := p.next("doc-changed", isType("doc-changed")); ev["doc"] != "notes" || ev["origin"] != "local" || len(ev["heads"].([]any)) != 1 {
		t.Fatalf("doc-changed = %v", ev)
	}
	p.send(`doc append items {"n": 1}`)
	p.next("ok", isOK("doc"))
	p.send(`doc get items.0.n`)
	if ev := p.next("doc-value", isDocValue("notes")); ev["value"] != float64(1) {
		t.Fatalf("doc get = %v", ev)
	}
	p.send("doc open gone")
	p.next("doc-opened", isType("doc-opened"))
	p.send("doc list")
	if ev := p.next("docs", isType("docs")); fmt.Sprint(ev["docs"]) != "[gone notes]" || ev["current"] != "gone" {
		t.Fatalf("docs = %v", ev)
	}
	p.send("doc delete gone")
	p.next("doc-deleted", isType("doc-deleted"))
	p.send("doc set x 1")
	if ev := p.next("error", isType("error")); !strings.Contains(ev["error"].(string), "no current document") {
		t.Fatalf("set without a current document: %v", ev)
	}

	// A second peer run on the same store is refused (exit 1, one line).
	code, stdout, stderr := runCapture(t, append([]string{"run"}, args[1:]...)...)
	if code != exitRuntime {
		t.Errorf("second run on one store: exit %d", code)
	}
	assertOneLineError(t, stdout, stderr, "in use by another peer run")

	p.stdin.Close()
	if code := <-p.code; code != 0 {
		t.Fatalf("exit %d: %s", code, p.stderr.String())
	}
	<-p.done
	p.checkOutput()

	// The next run finds what the first wrote (Close flushed it).
	p = startInProcess(t, args...)
	p.next("ready", isType("ready"))
	p.send("doc show @notes")
	ev := p.next("doc-value", isDocValue("notes"))
	if v := ev["value"].(map[string]any); v["title"] != "hello" || len(v["items"].([]any)) != 1 {
		t.Fatalf("after restart: %v", v)
	}
	p.send("doc list")
	if ev := p.next("docs", isType("docs")); fmt.Sprint(ev["docs"]) != "[notes]" {
		t.Fatalf("docs after restart = %v (deleted stays deleted)", ev)
	}
	p.send("doc open gone")
	if ev := p.next("error", isType("error")); !strings.Contains(ev["error"].(string), "deleted") {
		t.Fatalf("open of a deleted document: %v", ev)
	}
	p.stdin.Close()
	<-p.code
	if _, err := filepath.Glob(filepath.Join(data, "docs.bolt")); err != nil {
		t.Fatal(err)
	}
}

// The text line of doc-changed says who made the change: here, or the
// remote peer by name (when a room knows it) and short ID; and the heads.
func TestDocChangedTextSaysWho(t *testing.T) {
	const id = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
	h := []string{"5e2bb33cffe313b6aacea91143598aa5bc5f637b4e505d2c0cd0273cba0a4ab7"}
	for _, tc := range []struct {
		ev   docChangedEvent
		want string
	}{
		{docChangedEvent{Doc: "notes", Origin: "local", Heads: h}, "{notes} changed here, heads 5e2bb33c"},
		{docChangedEvent{Doc: "notes", Origin: id, Heads: h, name: "bob"}, "{notes} changed by bob (…CVe2Xo), heads 5e2bb33c"},
		{docChangedEvent{Doc: "notes", Origin: id, Heads: append(h, "00112233aa")}, "{notes} changed by (…CVe2Xo), heads 5e2bb33c,00112233"},
	} {
		if got := tc.ev.human(); got != tc.want {
			t.Errorf("human() = %q, want %q", got, tc.want)
		}
	}
}
