package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventLog collects the stdout of one `peer run` (in-process or a real
// process): every line, and the documented NDJSON events among them. Tests
// wait for events with deadlines; nothing sleeps.
type eventLog struct {
	t    *testing.T
	name string

	mu     sync.Mutex
	events []map[string]any // lines that are documented events
	raw    []string         // every line
	bad    []string         // lines that are not documented NDJSON events
	notify chan struct{}    // poked after every line

	stderr *syncBuffer
	done   chan struct{} // closed when read returns
}

func newEventLog(t *testing.T, name string) *eventLog {
	return &eventLog{t: t, name: name, notify: make(chan struct{}, 1), stderr: &syncBuffer{}, done: make(chan struct{})}
}

// read collects lines from r until EOF, then runs after (if any) and
// closes done.
func (l *eventLog) read(r io.Reader, after func()) {
	defer close(l.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var m map[string]any
		err := json.Unmarshal(sc.Bytes(), &m)
		l.mu.Lock()
		l.raw = append(l.raw, line)
		if err != nil || schema[fmt.Sprint(m["type"])] == nil {
			l.bad = append(l.bad, line)
		} else {
			l.events = append(l.events, m)
		}
		l.mu.Unlock()
		select {
		case l.notify <- struct{}{}:
		default:
		}
	}
	_, _ = io.Copy(io.Discard, r)
	if after != nil {
		after()
	}
}

// mark returns the current end of the event list, for waitFrom.
func (l *eventLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// waitIndex waits until an event at index >= from satisfies pred and
// returns it with its index; it fails the test after timeout or if the
// output ends first.
func (l *eventLog) waitIndex(from int, timeout time.Duration, what string, pred func(map[string]any) bool) (map[string]any, int) {
	l.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for i := from; i < len(l.events); i++ {
			if pred(l.events[i]) {
				ev := l.events[i]
				l.mu.Unlock()
				return ev, i
			}
		}
		from = max(from, len(l.events))
		l.mu.Unlock()
		select {
		case <-l.notify:
		case <-l.done:
			l.mu.Lock()
			n := len(l.events)
			l.mu.Unlock()
			if from >= n {
				l.t.Fatalf("%s: output ended while waiting for %s; stderr %q; output:\n%s", l.name, what, l.stderr.String(), l.output())
			}
		case <-deadline.C:
			l.t.Fatalf("%s: timed out after %v waiting for %s; output:\n%s", l.name, timeout, what, l.output())
		}
	}
}

func (l *eventLog) waitFrom(from int, timeout time.Duration, what string, pred func(map[string]any) bool) map[string]any {
	l.t.Helper()
	ev, _ := l.waitIndex(from, timeout, what, pred)
	return ev
}

func (l *eventLog) wait(timeout time.Duration, what string, pred func(map[string]any) bool) map[string]any {
	l.t.Helper()
	return l.waitFrom(0, timeout, what, pred)
}

// waitLine waits for a raw output line (text mode) equal to want.
func (l *eventLog) waitLine(timeout time.Duration, want string) {
	l.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for _, s := range l.raw {
			if s == want {
				l.mu.Unlock()
				return
			}
		}
		l.mu.Unlock()
		select {
		case <-l.notify:
		case <-l.done:
			l.mu.Lock()
			found := false
			for _, s := range l.raw {
				found = found || s == want
			}
			l.mu.Unlock()
			if !found {
				l.t.Fatalf("%s: output ended without line %q:\n%s", l.name, want, l.output())
			}
			return
		case <-deadline.C:
			l.t.Fatalf("%s: timed out waiting for line %q:\n%s", l.name, want, l.output())
		}
	}
}

func (l *eventLog) output() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.raw, "\n")
}

// checkOutput asserts that every stdout line was a documented NDJSON
// event with its keys in the documented order, and that stderr shows no
// crash.
func (l *eventLog) checkOutput() {
	l.t.Helper()
	l.mu.Lock()
	bad, raw := append([]string(nil), l.bad...), append([]string(nil), l.raw...)
	l.mu.Unlock()
	if len(bad) > 0 {
		l.t.Errorf("%s printed non-NDJSON or undocumented lines: %q", l.name, bad)
	}
	for _, s := range raw {
		checkSchema(l.t, []byte(s+"\n"))
	}
	if s := l.stderr.String(); strings.Contains(s, "panic") || strings.Contains(s, "goroutine ") {
		l.t.Errorf("%s stderr looks like a crash: %s", l.name, s)
	}
}
