package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// schema is the documented NDJSON schema (docs/CLI.md): for every event
// type, its keys in order. "raw" (presence, state peers) and "command"
// (error) are optional and listed separately. Changing this table means
// changing a documented interface.
var schema = map[string][]string{
	"ready":          {"type", "time", "peer", "name", "addrs", "key"},
	"connected":      {"type", "time", "peer", "addr"},
	"metrics":        {"type", "time", "url"},
	"room-joined":    {"type", "time", "room", "current"},
	"room-left":      {"type", "time", "room"},
	"current":        {"type", "time", "room"},
	"member-joined":  {"type", "time", "room", "peer", "name", "meta", "self"},
	"member-updated": {"type", "time", "room", "peer", "name", "meta", "self"},
	"member-left":    {"type", "time", "room", "peer", "name", "self", "reason"},
	"presence":       {"type", "time", "room", "peer", "name", "self", "key", "value", "cause"},
	"broadcast":      {"type", "time", "room", "peer", "name", "text"},
	"members":        {"type", "time", "room", "members"},
	"state":          {"type", "time", "room", "peers"},
	"rooms":          {"type", "time", "current", "rooms"},
	"lagged":         {"type", "time", "room", "dropped"},
	"ok":             {"type", "time", "command"},
	"error":          {"type", "time", "error"},
	"help":           {"type", "time", "text"},
	"stopped":        {"type", "time", "reason"},
	"id":             {"type", "time", "peer", "key", "created", "addrs"},
	"version":        {"type", "time", "version", "go", "revision", "modified"},
}

// optional keys per type, allowed anywhere after the required ones.
var optional = map[string][]string{
	"presence": {"raw"},
	"error":    {"command"},
}

const (
	alicePeer = "12D3KooWRC2BWwa8DgLjKea1bHvVPciWr4wLpE3Z3hcDUXtkkdkR"
	bobPeer   = "12D3KooWMgVTCY3M376C6fxHEmdYrs9rUB6iUSkRGqqzeSsqXanX"
)

// samples has one event of every type.
var samples = []event{
	readyEvent{Peer: alicePeer, Name: "alice", Addrs: []string{"/ip4/127.0.0.1/tcp/4001/p2p/" + alicePeer}, Key: "/home/a/.config/convene/key-alice"},
	connectedEvent{Peer: bobPeer, Addr: "/ip4/127.0.0.1/tcp/4002/p2p/" + bobPeer},
	metricsEvent{URL: "http://127.0.0.1:9464/metrics"},
	roomJoinedEvent{Room: "lobby", Current: true},
	roomLeftEvent{Room: "lobby"},
	currentEvent{Room: "game"},
	memberJoinedEvent{Room: "lobby", member: member{Peer: bobPeer, Name: "bob", Meta: map[string]string{"color": "red"}}},
	memberUpdatedEvent{Room: "lobby", member: member{Peer: bobPeer, Name: "bobby", Meta: map[string]string{}}},
	memberLeftEvent{Room: "lobby", Peer: bobPeer, Name: "bob", Reason: "timeout"},
	presenceEvent{Room: "lobby", Peer: bobPeer, Name: "bob", Key: "cursor", Value: json.RawMessage(`{"x":1}`), Cause: "remote"},
	broadcastEvent{Room: "lobby", Peer: bobPeer, Name: "bob", Text: "hi"},
	membersEvent{Room: "lobby", Members: []member{{Peer: alicePeer, Name: "alice", Meta: map[string]string{}, Self: true}, {Peer: bobPeer, Name: "bob", Meta: map[string]string{}}}},
	stateEvent{Room: "lobby", Peers: []peerState{{Peer: alicePeer, Name: "alice", Self: true, State: map[string]json.RawMessage{"cursor": json.RawMessage(`{"x":1}`)}}}},
	roomsEvent{Current: "lobby", Rooms: []roomInfo{{Room: "lobby", Status: "joined", Members: 2}}},
	laggedEvent{Room: "lobby", Dropped: 12},
	okEvent{Command: "set"},
	errorEvent{Command: "set", Error: "set cursor: malformed JSON value: unexpected end of JSON input"},
	helpEvent{Text: commandHelp},
	stoppedEvent{Reason: "eof"},
	idEvent{Peer: alicePeer, Key: "/tmp/key", Addrs: []string{}},
	versionEvent{Version: "(devel)", Go: "go1.26.8"},
}

var testTime = time.Date(2026, 11, 30, 9, 15, 0, 123456789, time.UTC)

// checkSchema parses one NDJSON line and checks it against schema.
func checkSchema(t *testing.T, line []byte) map[string]any {
	t.Helper()
	if !bytes.HasSuffix(line, []byte("\n")) || bytes.Count(line, []byte("\n")) != 1 {
		t.Fatalf("not exactly one line: %q", line)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("invalid JSON %q: %v", line, err)
	}
	typ, _ := m["type"].(string)
	want, ok := schema[typ]
	if !ok {
		t.Fatalf("undocumented event type %q in %s", typ, line)
	}
	keys := orderedKeys(t, line)
	var required []string
	for _, k := range keys {
		if !slices.Contains(optional[typ], k) {
			required = append(required, k)
		}
	}
	if !reflect.DeepEqual(required, want) {
		t.Errorf("%s: keys %v, want %v (+ optional %v)", typ, keys, want, optional[typ])
	}
	if _, err := time.Parse(time.RFC3339Nano, m["time"].(string)); err != nil {
		t.Errorf("%s: time %q is not RFC 3339: %v", typ, m["time"], err)
	}
	return m
}

// orderedKeys returns the top-level keys of a JSON object in order.
func orderedKeys(t *testing.T, line []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %q", line)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func TestEncodeEventMatchesSchema(t *testing.T) {
	seen := map[string]bool{}
	for _, ev := range samples {
		line := encodeEvent(ev, testTime)
		if !bytes.HasPrefix(line, []byte(`{"type":"`+ev.eventType()+`","time":"2026-11-30T09:15:00.123456789Z"`)) {
			t.Errorf("line does not start with type and time: %s", line)
		}
		checkSchema(t, line)
		seen[ev.eventType()] = true
	}
	for typ := range schema {
		if !seen[typ] {
			t.Errorf("no sample for event type %q", typ)
		}
	}
}

func TestEncodeEventOptionalFields(t *testing.T) {
	m := checkSchema(t, encodeEvent(presenceEvent{Room: "r", Peer: bobPeer, Key: "k", Raw: "AAE=", Cause: "remote"}, testTime))
	if m["value"] != nil || m["raw"] != "AAE=" {
		t.Errorf("non-JSON value: value=%v raw=%v, want null and base64", m["value"], m["raw"])
	}
	m = checkSchema(t, encodeEvent(presenceEvent{Room: "r", Peer: bobPeer, Key: "k", Cause: "timeout"}, testTime))
	if v, ok := m["value"]; !ok || v != nil {
		t.Errorf("removed key: value = %v (present %v), want null", v, ok)
	}
	m = checkSchema(t, encodeEvent(errorEvent{Error: "boom"}, testTime))
	if _, ok := m["command"]; ok {
		t.Error("error without a command should omit \"command\"")
	}
}

func TestEncodeEventEscapesUntrustedStrings(t *testing.T) {
	ev := broadcastEvent{Room: "r", Peer: bobPeer, Name: "evil\nname", Text: "line1\nline2\x1b[31m\u2028"}
	line := encodeEvent(ev, testTime)
	m := checkSchema(t, line)
	if m["text"] != ev.Text || m["name"] != ev.Name {
		t.Errorf("round trip changed strings: %q %q", m["name"], m["text"])
	}
}

func TestHumanFormat(t *testing.T) {
	for _, tc := range []struct {
		ev   event
		want string
	}{
		{roomJoinedEvent{Room: "lobby", Current: true}, "[lobby] joined (current room)"},
		{roomJoinedEvent{Room: "game"}, "[game] joined"},
		{roomLeftEvent{Room: "lobby"}, "[lobby] left"},
		{currentEvent{Room: "game"}, "current room: game"},
		{currentEvent{}, "no current room (join one)"},
		{memberJoinedEvent{Room: "lobby", member: member{Peer: bobPeer, Name: "bob", Meta: map[string]string{"b": "2", "a": "1"}}}, "[lobby] + bob (…sqXanX) joined a=1 b=2"},
		{memberJoinedEvent{Room: "lobby", member: member{Peer: alicePeer, Self: true}}, "[lobby] + (…tkkdkR) [you] joined"},
		{memberUpdatedEvent{Room: "lobby", member: member{Peer: bobPeer, Name: "bobby"}}, "[lobby] ~ bobby (…sqXanX) updated"},
		{memberLeftEvent{Room: "lobby", Peer: bobPeer, Name: "bob", Reason: "left"}, "[lobby] - bob (…sqXanX) left (left)"},
		{memberLeftEvent{Room: "lobby", Peer: bobPeer, Name: "bob", Reason: "timeout"}, "[lobby] - bob (…sqXanX) left (timeout)"},
		{presenceEvent{Room: "lobby", Peer: bobPeer, Name: "bob", Key: "cursor", Value: json.RawMessage(`{"x":1}`), Cause: "remote"}, `[lobby] bob (…sqXanX): cursor = {"x":1} (remote)`},
		{presenceEvent{Room: "lobby", Peer: alicePeer, Name: "alice", Self: true, Key: "cursor", Cause: "local"}, `[lobby] alice (…tkkdkR) [you]: cursor removed (local)`},
		{presenceEvent{Room: "lobby", Peer: bobPeer, Key: "blob", Raw: "AAEC", Cause: "remote"}, `[lobby] (…sqXanX): blob = <3 bytes, not JSON> (remote)`},
		{broadcastEvent{Room: "lobby", Peer: bobPeer, Name: "bob", Text: "hi there"}, "[lobby] bob (…sqXanX) says: hi there"},
		{broadcastEvent{Room: "lobby", Peer: alicePeer, Name: "alice", Text: "hello", self: true}, "[lobby] alice (…tkkdkR) [you] says: hello"},
		{broadcastEvent{Room: "lobby", Peer: bobPeer, Text: "no name yet"}, "[lobby] (…sqXanX) says: no name yet"},
		{memberJoinedEvent{Room: "lobby", member: member{Peer: bobPeer}}, "[lobby] + (…sqXanX) joined"},
		{stoppedEvent{Reason: "wait-timeout"}, "stopped (wait-timeout)"},
		{membersEvent{Room: "lobby", Members: []member{{Peer: alicePeer, Name: "alice", Self: true}, {Peer: bobPeer}}}, "[lobby] 2 members\n  " + alicePeer + " alice [you]\n  " + bobPeer + " -"},
		{membersEvent{Room: "lobby", Members: []member{{Peer: alicePeer, Name: "alice", Self: true}}}, "[lobby] 1 member\n  " + alicePeer + " alice [you]"},
		{stateEvent{Room: "lobby", Peers: []peerState{
			{Peer: alicePeer, Name: "alice", Self: true, State: map[string]json.RawMessage{"b": json.RawMessage(`2`), "a": json.RawMessage(`"x"`)}},
			{Peer: bobPeer, Name: "bob", State: map[string]json.RawMessage{}},
		}}, "[lobby] state of 2 peers\n  alice (…tkkdkR) [you]\n    a = \"x\"\n    b = 2\n  bob (…sqXanX) (no keys)"},
		{roomsEvent{Current: "b", Rooms: []roomInfo{{Room: "a", Status: "joined", Members: 1}, {Room: "b", Status: "joined", Members: 3}}}, "rooms:\n   a (joined, 1 member)\n * b (joined, 3 members)"},
		{roomsEvent{}, "no rooms (join one)"},
		{laggedEvent{Room: "lobby", Dropped: 1}, "[lobby] output fell behind: 1 event not shown"},
		{errorEvent{Command: "set", Error: "set x: malformed JSON value"}, "error: set x: malformed JSON value"},
		{stoppedEvent{Reason: "eof"}, "stopped (eof)"},
		{okEvent{Command: "set"}, ""},
		{connectedEvent{Peer: bobPeer, Addr: "/ip4/127.0.0.1/tcp/1/p2p/" + bobPeer}, "connected to /ip4/127.0.0.1/tcp/1/p2p/" + bobPeer},
		{readyEvent{Peer: alicePeer, Name: "alice", Addrs: []string{"/ip4/127.0.0.1/tcp/1/p2p/" + alicePeer}, Key: "/k"},
			"peer " + alicePeer + " (alice)\n  key file  /k\n  listening /ip4/127.0.0.1/tcp/1/p2p/" + alicePeer + "\n  others can connect with: --bootstrap /ip4/127.0.0.1/tcp/1/p2p/" + alicePeer},
		{idEvent{Peer: alicePeer, Addrs: []string{"/ip4/1.2.3.4/tcp/1/p2p/" + alicePeer}}, alicePeer + "\n/ip4/1.2.3.4/tcp/1/p2p/" + alicePeer},
	} {
		if got := tc.ev.human(); got != tc.want {
			t.Errorf("%s human:\n got %q\nwant %q", tc.ev.eventType(), got, tc.want)
		}
	}
}

func TestBestAddrPrefersLANTCP(t *testing.T) {
	for _, tc := range []struct {
		addrs []string
		want  string
	}{
		{[]string{"/ip4/127.0.0.1/tcp/1", "/ip4/192.168.1.2/udp/2/quic-v1", "/ip4/192.168.1.2/tcp/1"}, "/ip4/192.168.1.2/tcp/1"},
		{[]string{"/ip4/127.0.0.1/tcp/1", "/ip6/::1/tcp/1", "/ip6/fe80::1/tcp/1"}, "/ip6/fe80::1/tcp/1"},
		{[]string{"/ip4/127.0.0.1/tcp/1", "/ip6/::1/tcp/1"}, "/ip4/127.0.0.1/tcp/1"},
	} {
		if got := bestAddr(tc.addrs); got != tc.want {
			t.Errorf("bestAddr(%v) = %q, want %q", tc.addrs, got, tc.want)
		}
	}
}

func TestHumanFormatQuotesControlCharacters(t *testing.T) {
	// A remote peer controls names, keys, values and text: none of it may
	// reach the terminal raw.
	got := broadcastEvent{Room: "lobby", Peer: bobPeer, Name: "\x1b[2Jmallory", Text: "hi\nfake line\r"}.human()
	if strings.ContainsAny(got, "\x1b\n\r") {
		t.Errorf("control characters reached human output: %q", got)
	}
	got = presenceEvent{Room: "lobby", Peer: bobPeer, Key: "k\x07", Value: json.RawMessage("\"\u009b31m\""), Cause: "remote"}.human()
	if strings.ContainsAny(got, "\x07\u009b") {
		t.Errorf("control characters reached human output: %q", got)
	}
	got = memberJoinedEvent{Room: "lobby", member: member{Peer: bobPeer, Name: "ok", Meta: map[string]string{"x": "\x00"}}}.human()
	if strings.ContainsRune(got, 0) {
		t.Errorf("NUL reached human output: %q", got)
	}
	if clean("plain name ünïcode") != "plain name ünïcode" {
		t.Error("clean changed a printable string")
	}
	if clean("\xff") != `"\xff"` {
		t.Errorf("clean(invalid UTF-8) = %q", clean("\xff"))
	}
}

func TestJSONValue(t *testing.T) {
	v, raw := jsonValue([]byte(` { "x" : 1 } `))
	if string(v) != `{"x":1}` || raw != "" {
		t.Errorf("JSON value: %q %q", v, raw)
	}
	v, raw = jsonValue([]byte{0, 1, 2})
	if v != nil || raw != "AAEC" {
		t.Errorf("binary value: %q %q", v, raw)
	}
}

func TestPrinterRoutesOutput(t *testing.T) {
	var out, errOut bytes.Buffer
	p := newPrinter(&out, &errOut, false)
	p.emit(roomLeftEvent{Room: "a"})
	p.emit(okEvent{Command: "set"})
	p.emit(errorEvent{Error: "boom"})
	if out.String() != "[a] left\n" {
		t.Errorf("human stdout = %q (ok events are silent)", out.String())
	}
	if errOut.String() != "error: boom\n" {
		t.Errorf("human stderr = %q (errors go to stderr)", errOut.String())
	}

	out.Reset()
	errOut.Reset()
	p = newPrinter(&out, &errOut, true)
	p.now = func() time.Time { return testTime }
	p.emit(roomLeftEvent{Room: "a"})
	p.emit(okEvent{Command: "set"})
	p.emit(errorEvent{Error: "boom"})
	if errOut.Len() != 0 {
		t.Errorf("JSON mode wrote to stderr: %q", errOut.String())
	}
	sc := bufio.NewScanner(&out)
	var types []string
	for sc.Scan() {
		m := checkSchema(t, append(sc.Bytes(), '\n'))
		types = append(types, m["type"].(string))
	}
	if !reflect.DeepEqual(types, []string{"room-left", "ok", "error"}) {
		t.Errorf("JSON events = %v", types)
	}
}

// TestDocsExamplesMatchSchema keeps docs/CLI.md honest: it must show an
// example line for every event type, and each example must match the
// schema the code produces.
func TestDocsExamplesMatchSchema(t *testing.T) {
	data, err := os.ReadFile("../../docs/CLI.md")
	if err != nil {
		t.Fatalf("docs/CLI.md: %v", err)
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, `{"type":`) {
			continue
		}
		m := checkSchema(t, []byte(l+"\n"))
		seen[m["type"].(string)] = true
	}
	for typ := range schema {
		if !seen[typ] {
			t.Errorf("docs/CLI.md has no example line for event type %q", typ)
		}
	}
}
