package main

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		line string
		want command
	}{
		{"", command{}},
		{"   \t ", command{}},
		{"# a comment", command{}},
		{`set cursor {"x": 1, "y": 2}`, command{Name: "set", Key: "cursor", Value: []byte(`{"x":1,"y":2}`)}},
		{`  SET   typing   true  `, command{Name: "set", Key: "typing", Value: []byte(`true`)}},
		{`set status "away now"`, command{Name: "set", Key: "status", Value: []byte(`"away now"`)}},
		{`set @game pos [1,2]`, command{Name: "set", Room: "game", Key: "pos", Value: []byte(`[1,2]`)}},
		{`set --ttl 10s typing true`, command{Name: "set", Key: "typing", Value: []byte(`true`), TTL: 10 * time.Second}},
		{`set @game --ttl=1m30s typing null`, command{Name: "set", Room: "game", Key: "typing", Value: []byte(`null`), TTL: 90 * time.Second}},
		{"del cursor", command{Name: "del", Key: "cursor"}},
		{"delete @game cursor", command{Name: "del", Room: "game", Key: "cursor"}},
		{"say hello world", command{Name: "say", Text: "hello world"}},
		{"say   spaced    out  ", command{Name: "say", Text: "spaced    out"}},
		{"say @game gg", command{Name: "say", Room: "game", Text: "gg"}},
		{"say -- @bob hi", command{Name: "say", Text: "@bob hi"}},
		{"say @game -- @bob hi", command{Name: "say", Room: "game", Text: "@bob hi"}},
		{"say @", command{Name: "say", Text: "@"}},
		{"join lobby", command{Name: "join", Room: "lobby"}},
		{"join @lobby", command{Name: "join", Room: "lobby"}},
		{"leave", command{Name: "leave"}},
		{"leave game", command{Name: "leave", Room: "game"}},
		{"use game", command{Name: "use", Room: "game"}},
		{"members", command{Name: "members"}},
		{"members @game", command{Name: "members", Room: "game"}},
		{"state game", command{Name: "state", Room: "game"}},
		{"rooms", command{Name: "rooms"}},
		{"addrs", command{Name: "addrs"}},
		{"help", command{Name: "help"}},
		{"quit", command{Name: "quit"}},
		{"exit", command{Name: "quit"}},
		{"quit\r", command{Name: "quit"}},
		{"wait", command{Name: "wait", N: 1, Wait: defaultWaitTimeout}},
		{"WAIT 2", command{Name: "wait", N: 2, Wait: defaultWaitTimeout}},
		{"wait 10s", command{Name: "wait", N: 1, Wait: 10 * time.Second}},
		{"wait 3 1m", command{Name: "wait", N: 3, Wait: time.Minute}},
		{"wait 500ms 2", command{Name: "wait", N: 2, Wait: 500 * time.Millisecond}},
		{"wait members 2 10s", command{Name: "wait", N: 2, Wait: 10 * time.Second}},
		{"wait @game members 4", command{Name: "wait", Room: "game", N: 4, Wait: defaultWaitTimeout}},
		{"wait @game", command{Name: "wait", Room: "game", N: 1, Wait: defaultWaitTimeout}},
	} {
		got, err := parseCommand(tc.line)
		if err != nil {
			t.Errorf("parseCommand(%q): %v", tc.line, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseCommand(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
	}
}

func TestParseCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		line, want string
	}{
		{"dance", `unknown command "dance" (try help)`},
		{"set", "set: missing KEY and JSON value"},
		{"set cursor", "set cursor: missing JSON value"},
		{`set cursor {"x":`, "set cursor: malformed JSON value"},
		{`set cursor {bad}`, "set cursor: malformed JSON value"},
		{`set cursor hello`, "set cursor: malformed JSON value"},
		{`set cursor 1 2`, "set cursor: malformed JSON value"},
		{`set --ttl soon typing true`, `set: --ttl "soon"`},
		{`set --ttl -1s typing true`, `set: --ttl "-1s"`},
		{"del", "del: missing KEY"},
		{"del a b", `del: unexpected "b"`},
		{"say", "say: nothing to say"},
		{"say @game", "say: nothing to say"},
		{"say --", "say: nothing to say"},
		{"join", "join: missing ROOM"},
		{"join a b", "join: one room at a time"},
		{"use", "use: missing ROOM"},
		{"leave a b", `leave: unexpected "b"`},
		{"members @", "members: empty room name"},
		{"rooms now", "rooms: takes no arguments"},
		{"quit now", "quit: takes no arguments"},
		{"wait 0", `wait: count "0": want a whole number of other members, at least 1`},
		{"wait soon", `wait: "soon" is neither a count nor a timeout with a unit such as 10s (wait [@room] [N] [TIMEOUT]`},
		{"wait -1", `wait: "-1" is neither a count nor a timeout`},
		{"wait 1.5", `wait: "1.5" is neither a count nor a timeout`},
		{"wait 0s", `wait: "0s" is neither a count nor a timeout`},
		{"wait 2 3", "wait: two counts"},
		{"wait 1s 2s", "wait: two timeouts"},
		{"wait members", "wait: members needs a count N"},
		{"wait members 10s", "wait: members needs a count N"},
		{"wait 99999999999999999999", `wait: count "99999999999999999999"`},
	} {
		_, err := parseCommand(tc.line)
		if err == nil {
			t.Errorf("parseCommand(%q): no error, want %q", tc.line, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("parseCommand(%q) error = %q, want one line containing %q", tc.line, err, tc.want)
		}
	}
}

func TestParseCommandMalformedJSONSaysWhere(t *testing.T) {
	_, err := parseCommand(`set cursor {"x":1,}`)
	if err == nil || !strings.Contains(err.Error(), "at byte") {
		t.Errorf("err = %v, want the byte offset of the syntax error", err)
	}
}

func TestCommandHelpMentionsEveryCommand(t *testing.T) {
	for _, c := range []string{"set", "del", "say", "wait", "join", "leave", "use", "members", "state", "rooms", "addrs", "help", "quit"} {
		if !strings.Contains(commandHelp, "\n  "+c+" ") {
			t.Errorf("help text does not document %q", c)
		}
	}
}

func readAllLines(t *testing.T, input string, max int) (lines []string, errs int) {
	t.Helper()
	lr := newLineReader(strings.NewReader(input), max)
	for i := 0; i < 1000; i++ {
		s, err := lr.next()
		switch {
		case errors.Is(err, errLineTooLong):
			errs++
			lines = append(lines, "<too long>")
		case errors.Is(err, io.EOF):
			return lines, errs
		case err != nil:
			t.Fatal(err)
		default:
			lines = append(lines, s)
		}
	}
	t.Fatal("reader did not reach EOF")
	return nil, 0
}

func TestLineReader(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		max      int
		want     []string
	}{
		{"empty", "", 100, nil},
		{"lines", "a\nb\n", 100, []string{"a", "b"}},
		{"no final newline", "a\nb", 100, []string{"a", "b"}},
		{"crlf", "a\r\nb\r\n", 100, []string{"a", "b"}},
		{"blank lines kept", "\n\nx\n", 100, []string{"", "", "x"}},
		{"exactly max", "12345\n", 5, []string{"12345"}},
		{"too long then fine", "123456\nok\n", 5, []string{"<too long>", "ok"}},
		{"too long at EOF", "ok\n1234567", 5, []string{"ok", "<too long>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := readAllLines(t, tc.in, tc.max)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("lines = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLineReaderHugeLineSpanningBuffers(t *testing.T) {
	// Longer than bufio's 64 KiB buffer and than max: skipped whole, and
	// the next line still arrives.
	in := strings.Repeat("x", 200<<10) + "\nset a 1\n"
	got, errs := readAllLines(t, in, 100<<10)
	if errs != 1 || !reflect.DeepEqual(got, []string{"<too long>", "set a 1"}) {
		t.Errorf("got %d errors, lines %.40q", errs, got)
	}
	// A long line within max that spans several buffer fills is kept.
	in = strings.Repeat("y", 150<<10) + "\n"
	got, errs = readAllLines(t, in, 200<<10)
	if errs != 0 || len(got) != 1 || len(got[0]) != 150<<10 {
		t.Errorf("long line: %d errors, %d lines", errs, len(got))
	}
}

// FuzzParseCommand: no stdin line makes the parser panic, and a parsed
// wait always has a count and a timeout the node can use.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"wait", "wait 2 10s", "wait @r members 3", "wait members", "set a 1", "say -- @x", "del @", "join", `set --ttl=1s k {"a":[1]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := parseCommand(line)
		if err == nil && c.Name == "wait" && (c.N < 1 || c.Wait <= 0) {
			t.Errorf("parseCommand(%q) = %+v: a wait without a usable count or timeout", line, c)
		}
	})
}
