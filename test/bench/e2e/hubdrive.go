package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// hproc is one process of the hub comparison (a Convene node process, a
// y-websocket client process or the hub server) and the line protocol to
// it (hubproc.go, yhub/lines.mjs).
type hproc struct {
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser
	ev   func(hubEvent)

	mu      sync.Mutex
	next    int
	pending map[int]chan hreply
	dead    error
	stderr  *stderrTail
	done    chan struct{}
}

type hreply struct {
	raw json.RawMessage
	err error
}

// hubEvent is an event line of a process: node recv first saw (seen) or
// dropped (gone) node peer's cursor at t (CLOCK_MONOTONIC ns).
type hubEvent struct {
	Ev     string `json:"ev"`
	Recv   int    `json:"recv"`
	Peer   int    `json:"peer"`
	T      int64  `json:"t"`
	Reason string `json:"reason"`
}

// stderrTail keeps the last 4 KiB a process wrote to stderr.
type stderrTail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *stderrTail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(b), nil
}

func (t *stderrTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

func startHProc(name string, cmd *exec.Cmd, ev func(hubEvent)) (*hproc, error) {
	p := &hproc{name: name, cmd: cmd, ev: ev, pending: map[int]chan hreply{}, stderr: &stderrTail{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.in = in
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go p.read(out)
	return p, nil
}

func (p *hproc) read(out io.Reader) {
	defer close(p.done)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		line := sc.Bytes()
		var head struct {
			ID    int    `json:"id"`
			Ev    string `json:"ev"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal(line, &head); err != nil {
			continue // not ours (a library printing to stdout)
		}
		if head.Ev != "" {
			var e hubEvent
			if json.Unmarshal(line, &e) == nil && p.ev != nil {
				p.ev(e)
			}
			continue
		}
		p.mu.Lock()
		ch := p.pending[head.ID]
		delete(p.pending, head.ID)
		p.mu.Unlock()
		if ch == nil {
			continue
		}
		if head.Error != "" {
			ch <- hreply{err: fmt.Errorf("%s: %s", p.name, head.Error)}
		} else {
			ch <- hreply{raw: append(json.RawMessage(nil), line...)}
		}
	}
	err := sc.Err()
	if err == nil {
		err = io.EOF
	}
	p.mu.Lock()
	p.dead = fmt.Errorf("%s exited (%v); stderr: %s", p.name, err, p.stderr.String())
	for id, ch := range p.pending {
		ch <- hreply{err: p.dead}
		delete(p.pending, id)
	}
	p.mu.Unlock()
}

// send writes a request and returns the channel its reply arrives on.
func (p *hproc) send(req map[string]any) <-chan hreply {
	ch := make(chan hreply, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead != nil {
		ch <- hreply{err: p.dead}
		return ch
	}
	p.next++
	req["id"] = p.next
	b, err := json.Marshal(req)
	if err == nil {
		_, err = p.in.Write(append(b, '\n'))
	}
	if err != nil {
		ch <- hreply{err: fmt.Errorf("%s: %w", p.name, err)}
		return ch
	}
	p.pending[p.next] = ch
	return ch
}

// call sends req and decodes its reply into out (if not nil).
func (p *hproc) call(req map[string]any, out any) error {
	r := <-p.send(req)
	if r.err != nil {
		return r.err
	}
	if out != nil {
		if err := json.Unmarshal(r.raw, out); err != nil {
			return fmt.Errorf("%s: reply to %v: %w", p.name, req["op"], err)
		}
	}
	return nil
}

// signal sends sig to the process.
func (p *hproc) signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// stop asks the process to quit and waits for it (killing it after 5 s).
func (p *hproc) stop() {
	p.mu.Lock()
	dead := p.dead != nil
	p.mu.Unlock()
	if !dead {
		p.send(map[string]any{"op": "quit"})
	}
	_ = p.in.Close()
	exited := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-exited
	}
	<-p.done
}
