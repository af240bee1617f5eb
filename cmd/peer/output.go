package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// The events `peer run` prints. Each is one NDJSON object with --json
// (schema in docs/CLI.md: "type" and "time" first, then the fields below
// in this order) or one human-readable line or block otherwise. Strings
// that come from the network (names, meta, text, presence values) are
// untrusted: JSON escapes them; human output quotes any that hold
// control characters or invalid UTF-8 so that a remote peer cannot drive
// the terminal.

type event interface {
	eventType() string
	human() string // without a trailing newline; may span lines
}

// member describes a peer in events and lists.
type member struct {
	Peer string            `json:"peer"`
	Name string            `json:"name"`
	Meta map[string]string `json:"meta"`
	Self bool              `json:"self"`
}

type readyEvent struct {
	Peer  string   `json:"peer"`
	Name  string   `json:"name"`
	Addrs []string `json:"addrs"`
	Key   string   `json:"key"` // key file; "" with --ephemeral
}

type connectedEvent struct {
	Peer string `json:"peer"`
	Addr string `json:"addr"`
}

type roomJoinedEvent struct {
	Room    string `json:"room"`
	Current bool   `json:"current"`
}

type roomLeftEvent struct {
	Room string `json:"room"`
}

type currentEvent struct {
	Room string `json:"room"` // "" when no room is joined any more
}

type memberJoinedEvent struct {
	Room string `json:"room"`
	member
}

type memberUpdatedEvent struct {
	Room string `json:"room"`
	member
}

type memberLeftEvent struct {
	Room   string `json:"room"`
	Peer   string `json:"peer"`
	Name   string `json:"name"`
	Self   bool   `json:"self"`
	Reason string `json:"reason"` // left, timeout
}

type presenceEvent struct {
	Room  string          `json:"room"`
	Peer  string          `json:"peer"`
	Name  string          `json:"name"`
	Self  bool            `json:"self"`
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`         // null when removed (or not JSON: see Raw)
	Raw   string          `json:"raw,omitempty"` // base64 of a value that is not JSON
	Cause string          `json:"cause"`         // local, remote, timeout, leave
}

type broadcastEvent struct {
	Room string `json:"room"`
	Peer string `json:"peer"`
	Name string `json:"name"`
	Text string `json:"text"`
	self bool   // the local echo of your own say (text mode only)
}

type membersEvent struct {
	Room    string   `json:"room"`
	Members []member `json:"members"`
}

type peerState struct {
	Peer  string                     `json:"peer"`
	Name  string                     `json:"name"`
	Self  bool                       `json:"self"`
	State map[string]json.RawMessage `json:"state"`         // key -> JSON value (null if not JSON: see Raw)
	Raw   map[string]string          `json:"raw,omitempty"` // key -> base64, for values that are not JSON
}

type stateEvent struct {
	Room  string      `json:"room"`
	Peers []peerState `json:"peers"`
}

type roomInfo struct {
	Room    string `json:"room"`
	Status  string `json:"status"`
	Members int    `json:"members"`
}

type roomsEvent struct {
	Current string     `json:"current"`
	Rooms   []roomInfo `json:"rooms"`
}

type laggedEvent struct {
	Room    string `json:"room"`
	Dropped int    `json:"dropped"`
}

type okEvent struct {
	Command string `json:"command"`
}

type errorEvent struct {
	Command string `json:"command,omitempty"` // the stdin command that failed, if any
	Error   string `json:"error"`
}

type helpEvent struct {
	Text string `json:"text"`
}

type stoppedEvent struct {
	Reason string `json:"reason"` // eof, quit, signal, wait-timeout
}

func (readyEvent) eventType() string         { return "ready" }
func (connectedEvent) eventType() string     { return "connected" }
func (roomJoinedEvent) eventType() string    { return "room-joined" }
func (roomLeftEvent) eventType() string      { return "room-left" }
func (currentEvent) eventType() string       { return "current" }
func (memberJoinedEvent) eventType() string  { return "member-joined" }
func (memberUpdatedEvent) eventType() string { return "member-updated" }
func (memberLeftEvent) eventType() string    { return "member-left" }
func (presenceEvent) eventType() string      { return "presence" }
func (broadcastEvent) eventType() string     { return "broadcast" }
func (membersEvent) eventType() string       { return "members" }
func (stateEvent) eventType() string         { return "state" }
func (roomsEvent) eventType() string         { return "rooms" }
func (laggedEvent) eventType() string        { return "lagged" }
func (okEvent) eventType() string            { return "ok" }
func (errorEvent) eventType() string         { return "error" }
func (helpEvent) eventType() string          { return "help" }
func (stoppedEvent) eventType() string       { return "stopped" }

func (e readyEvent) human() string {
	var b strings.Builder
	fmt.Fprintf(&b, "peer %s", e.Peer)
	if e.Name != "" {
		fmt.Fprintf(&b, " (%s)", clean(e.Name))
	}
	if e.Key != "" {
		fmt.Fprintf(&b, "\n  key file  %s", e.Key)
	}
	if len(e.Addrs) == 0 {
		b.WriteString("\n  not listening on any address")
	}
	for _, a := range e.Addrs {
		fmt.Fprintf(&b, "\n  listening %s", a)
	}
	if len(e.Addrs) > 0 {
		fmt.Fprintf(&b, "\n  others can connect with: --bootstrap %s", bestAddr(e.Addrs))
	}
	return b.String()
}

// bestAddr picks the address to suggest for --bootstrap: IPv4 TCP on a
// non-loopback interface (reachable from the LAN and from this machine),
// else any non-loopback address, else the first.
func bestAddr(addrs []string) string {
	loopback := func(a string) bool {
		return strings.HasPrefix(a, "/ip4/127.") || strings.HasPrefix(a, "/ip6/::1/")
	}
	for _, a := range addrs {
		if strings.HasPrefix(a, "/ip4/") && strings.Contains(a, "/tcp/") && !loopback(a) {
			return a
		}
	}
	for _, a := range addrs {
		if !loopback(a) {
			return a
		}
	}
	return addrs[0]
}

func (e connectedEvent) human() string { return "connected to " + e.Addr }

func (e roomJoinedEvent) human() string {
	if e.Current {
		return fmt.Sprintf("[%s] joined (current room)", clean(e.Room))
	}
	return fmt.Sprintf("[%s] joined", clean(e.Room))
}

func (e roomLeftEvent) human() string { return fmt.Sprintf("[%s] left", clean(e.Room)) }

func (e currentEvent) human() string {
	if e.Room == "" {
		return "no current room (join one)"
	}
	return fmt.Sprintf("current room: %s", clean(e.Room))
}

func (e memberJoinedEvent) human() string {
	return fmt.Sprintf("[%s] + %s joined%s", clean(e.Room), who(e.Peer, e.Name, e.Self), metaString(e.Meta))
}

func (e memberUpdatedEvent) human() string {
	return fmt.Sprintf("[%s] ~ %s updated%s", clean(e.Room), who(e.Peer, e.Name, e.Self), metaString(e.Meta))
}

func (e memberLeftEvent) human() string {
	return fmt.Sprintf("[%s] - %s left (%s)", clean(e.Room), who(e.Peer, e.Name, e.Self), e.Reason)
}

func (e presenceEvent) human() string {
	w := who(e.Peer, e.Name, e.Self)
	switch {
	case e.Value != nil:
		return fmt.Sprintf("[%s] %s: %s = %s (%s)", clean(e.Room), w, clean(e.Key), clean(string(e.Value)), e.Cause)
	case e.Raw != "":
		return fmt.Sprintf("[%s] %s: %s = <%d bytes, not JSON> (%s)", clean(e.Room), w, clean(e.Key), rawLen(e.Raw), e.Cause)
	default:
		return fmt.Sprintf("[%s] %s: %s removed (%s)", clean(e.Room), w, clean(e.Key), e.Cause)
	}
}

func (e broadcastEvent) human() string {
	return fmt.Sprintf("[%s] %s says: %s", clean(e.Room), who(e.Peer, e.Name, e.self), clean(e.Text))
}

func (e membersEvent) human() string {
	var b strings.Builder
	n := len(e.Members)
	fmt.Fprintf(&b, "[%s] %d member%s", clean(e.Room), n, plural(n))
	for _, m := range e.Members {
		fmt.Fprintf(&b, "\n  %s %s%s", m.Peer, nameOrDash(m.Name, m.Self), metaString(m.Meta))
	}
	return b.String()
}

func (e stateEvent) human() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] state of %d peer%s", clean(e.Room), len(e.Peers), plural(len(e.Peers)))
	for _, p := range e.Peers {
		fmt.Fprintf(&b, "\n  %s", who(p.Peer, p.Name, p.Self))
		if len(p.State) == 0 {
			b.WriteString(" (no keys)")
		}
		keys := make([]string, 0, len(p.State))
		for k := range p.State {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := string(p.State[k])
			if r, ok := p.Raw[k]; ok {
				v = fmt.Sprintf("<%d bytes, not JSON>", rawLen(r))
			}
			fmt.Fprintf(&b, "\n    %s = %s", clean(k), clean(v))
		}
	}
	return b.String()
}

func (e roomsEvent) human() string {
	if len(e.Rooms) == 0 {
		return "no rooms (join one)"
	}
	var b strings.Builder
	b.WriteString("rooms:")
	for _, r := range e.Rooms {
		mark := " "
		if r.Room == e.Current {
			mark = "*"
		}
		fmt.Fprintf(&b, "\n %s %s (%s, %d member%s)", mark, clean(r.Room), r.Status, r.Members, plural(r.Members))
	}
	return b.String()
}

func (e laggedEvent) human() string {
	return fmt.Sprintf("[%s] output fell behind: %d event%s not shown", clean(e.Room), e.Dropped, plural(e.Dropped))
}

func (okEvent) human() string { return "" } // silent in human mode

func (e errorEvent) human() string { return "error: " + e.Error }

func (e helpEvent) human() string    { return e.Text }
func (e stoppedEvent) human() string { return "stopped (" + e.Reason + ")" }

// who renders a peer for humans: "alice (…a1b2c3)", "(…a1b2c3)", with
// " [you]" for the local peer.
func who(peerID, name string, self bool) string {
	s := "(" + shortID(peerID) + ")"
	if name != "" {
		s = clean(name) + " " + s
	}
	if self {
		s += " [you]"
	}
	return s
}

func nameOrDash(name string, self bool) string {
	s := "-"
	if name != "" {
		s = clean(name)
	}
	if self {
		s += " [you]"
	}
	return s
}

// shortID keeps the last 6 characters of a peer ID, which are the random
// ones (every Ed25519 ID starts with 12D3KooW).
func shortID(id string) string {
	if len(id) <= 8 {
		return id
	}
	return "…" + id[len(id)-6:]
}

func metaString(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", clean(k), clean(m[k]))
	}
	return b.String()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// clean returns s as is if it is valid UTF-8 without control or
// non-printable characters, and Go-quoted otherwise.
func clean(s string) string {
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if r != ' ' && (unicode.IsControl(r) || !unicode.IsPrint(r)) {
			return strconv.Quote(s)
		}
	}
	return s
}

// rawLen is the length of the value behind a base64 raw field.
func rawLen(b64 string) int {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return 0
	}
	return len(b)
}

// jsonValue turns a presence value into the event's value: compact JSON
// if it is JSON, else null with the bytes in base64.
func jsonValue(v []byte) (json.RawMessage, string) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return nil, base64.StdEncoding.EncodeToString(v)
	}
	return json.RawMessage(buf.Bytes()), ""
}

// printer writes events, one per line, to out (and, in human mode,
// errors to errOut). It is safe for concurrent use. The first write
// error is kept and later writes are skipped.
type printer struct {
	mu     sync.Mutex
	out    io.Writer
	errOut io.Writer
	json   bool
	now    func() time.Time
	err    error
}

func newPrinter(out, errOut io.Writer, jsonOut bool) *printer {
	return &printer{out: out, errOut: errOut, json: jsonOut, now: time.Now}
}

// emit writes one event.
func (p *printer) emit(ev event) {
	var line []byte
	w := p.out
	if p.json {
		line = encodeEvent(ev, p.now())
	} else {
		s := ev.human()
		if s == "" {
			return
		}
		if _, isErr := ev.(errorEvent); isErr {
			w = p.errOut
		}
		line = append([]byte(s), '\n')
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return
	}
	if _, err := w.Write(line); err != nil {
		p.err = err
	}
}

// encodeEvent returns ev as one JSON line: {"type":..,"time":..,<fields>}\n.
func encodeEvent(ev event, now time.Time) []byte {
	body, err := json.Marshal(ev)
	if err != nil || len(body) < 2 || body[0] != '{' {
		// Every event type is a plain struct; this cannot happen, but a
		// line must still be valid JSON.
		body, _ = json.Marshal(errorEvent{Error: fmt.Sprintf("peer: cannot encode %s event: %v", ev.eventType(), err)})
		ev = errorEvent{}
	}
	var b bytes.Buffer
	b.WriteString(`{"type":`)
	t, _ := json.Marshal(ev.eventType())
	b.Write(t)
	b.WriteString(`,"time":"`)
	b.WriteString(now.UTC().Format(time.RFC3339Nano))
	b.WriteByte('"')
	if len(body) > 2 {
		b.WriteByte(',')
		b.Write(body[1:])
	} else {
		b.WriteByte('}')
	}
	b.WriteByte('\n')
	return b.Bytes()
}
