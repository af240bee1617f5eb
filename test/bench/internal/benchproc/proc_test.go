package benchproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const childEnv = "BENCHPROC_TEST_CHILD"

// TestMain runs the child process when the test binary is started again
// with childEnv, on Serve: it echoes "echo" requests, fails "fail" ones,
// prints an event line and a non-JSON line before each reply to "event",
// exits without answering "die", and quits on "quit".
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "" {
		os.Exit(m.Run())
	}
	var mu sync.Mutex
	out := json.NewEncoder(os.Stdout)
	write := func(v any) {
		mu.Lock()
		_ = out.Encode(v)
		mu.Unlock()
	}
	type request struct{ Op, Arg string }
	Serve(os.Stdin, func(req request) (map[string]any, error) {
		switch req.Op {
		case "echo":
			return map[string]any{"arg": req.Arg}, nil
		case "fail":
			return nil, errors.New("it failed")
		case "event":
			mu.Lock()
			fmt.Println("a library printing to stdout")
			mu.Unlock()
			write(map[string]any{"ev": "seen", "arg": req.Arg})
			return nil, nil
		case "die":
			fmt.Fprintln(os.Stderr, "dying on purpose")
			os.Exit(3)
		}
		return nil, fmt.Errorf("unknown op %q", req.Op)
	}, func(v map[string]any) { write(v) })()
	os.Exit(0)
}

func startChild(t *testing.T, onEvent func([]byte)) *Proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	p, err := Start("child", cmd, onEvent)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Replies find their request by id (many in flight at once), a reported
// error comes back as the call's error, event lines reach onEvent in order
// and lines that are not JSON are skipped.
func TestLineProtocol(t *testing.T) {
	var mu sync.Mutex
	var events []string
	p := startChild(t, func(line []byte) {
		var e struct{ Ev, Arg string }
		if err := json.Unmarshal(line, &e); err != nil {
			t.Errorf("event %q: %v", line, err)
		}
		mu.Lock()
		events = append(events, e.Ev+":"+e.Arg)
		mu.Unlock()
	})
	defer p.Stop()

	var waits []func() error
	outs := make([]struct{ Arg string }, 20)
	for i := range outs {
		waits = append(waits, p.Async(map[string]any{"op": "echo", "arg": fmt.Sprint(i)}, &outs[i]))
	}
	for i, w := range waits {
		if err := w(); err != nil {
			t.Fatal(err)
		}
		if outs[i].Arg != fmt.Sprint(i) {
			t.Fatalf("reply %d carries %q: replies matched to the wrong requests", i, outs[i].Arg)
		}
	}
	if err := p.Call(map[string]any{"op": "fail"}, nil); err == nil || !strings.Contains(err.Error(), "child: it failed") {
		t.Fatalf("a failed request returned %v", err)
	}
	for _, a := range []string{"x", "y"} {
		if err := p.Call(map[string]any{"op": "event", "arg": a}, nil); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(events, ",") != "seen:x,seen:y" {
		t.Fatalf("events %q, want seen:x,seen:y", events)
	}
}

// A process that exits fails the request in flight and every later one
// with an error carrying its stderr; Stop still returns.
func TestProcessEndFailsRequests(t *testing.T) {
	p := startChild(t, nil)
	defer p.Stop()
	err := p.Call(map[string]any{"op": "die"}, nil)
	if err == nil || !strings.Contains(err.Error(), "dying on purpose") {
		t.Fatalf("request to a dying process: %v", err)
	}
	if err2 := p.Call(map[string]any{"op": "echo"}, nil); err2 == nil {
		t.Fatal("a request after the end succeeded")
	}
}

// Stop ends a process that does not read its stdin (SIGSTOP'd): it kills
// it after the wait.
func TestStopKillsAStoppedProcess(t *testing.T) {
	defer func(d time.Duration) { stopWait = d }(stopWait)
	stopWait = 100 * time.Millisecond
	p := startChild(t, nil)
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	st := p.cmd.ProcessState
	if st == nil {
		t.Fatal("Stop returned before the process was reaped")
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the stopped process ended with %v, want killed", st)
	}
}
