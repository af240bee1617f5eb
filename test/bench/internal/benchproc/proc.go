// Package benchproc runs the benchmarks' peer processes (Node.js programs,
// and the harnesses' own binaries started again) and speaks their line
// protocol: one JSON request per line on stdin, with an "id"; one JSON reply
// per line on stdout with the same "id" (and "error" if the request failed);
// a line with an "ev" field is an event, handed to the caller. Lines that
// are not JSON objects (a library printing to stdout) are skipped. It also
// finds a harness's folder and installs and checks its pinned npm packages
// (npm.go).
package benchproc

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// stopWait is how long Stop waits for a process to exit before killing it
// (a variable for the tests).
var stopWait = 5 * time.Second

// Reply is a process's answer to one request: the whole reply line, or
// the error it reported (or the process's end).
type Reply struct {
	Raw json.RawMessage
	Err error
}

// Proc is one running process and its line protocol.
type Proc struct {
	name    string
	cmd     *exec.Cmd
	in      io.WriteCloser
	onEvent func(line []byte)
	stderr  *tail
	done    chan struct{} // closed when stdout ends

	mu      sync.Mutex
	next    int
	pending map[int]chan Reply
	dead    error
}

// Start starts cmd (its Stdin, Stdout and Stderr must be unset) and reads
// its replies. onEvent, if not nil, gets every event line (in order, on the
// reading goroutine, so it must not block); name prefixes errors.
func Start(name string, cmd *exec.Cmd, onEvent func(line []byte)) (*Proc, error) {
	p := &Proc{name: name, cmd: cmd, onEvent: onEvent, stderr: &tail{}, done: make(chan struct{}), pending: map[int]chan Reply{}}
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

// Name is the name the process was started with.
func (p *Proc) Name() string { return p.name }

func (p *Proc) read(out io.Reader) {
	defer close(p.done)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<28)
	for sc.Scan() {
		line := sc.Bytes()
		var head struct {
			ID    int    `json:"id"`
			Ev    string `json:"ev"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal(line, &head); err != nil {
			continue
		}
		if head.Ev != "" {
			if p.onEvent != nil {
				p.onEvent(line)
			}
			continue
		}
		p.mu.Lock()
		ch := p.pending[head.ID]
		delete(p.pending, head.ID)
		p.mu.Unlock()
		switch {
		case ch == nil:
		case head.Error != "":
			ch <- Reply{Err: fmt.Errorf("%s: %s", p.name, head.Error)}
		default:
			ch <- Reply{Raw: append(json.RawMessage(nil), line...)}
		}
	}
	err := sc.Err()
	if err == nil {
		err = io.EOF
	}
	p.mu.Lock()
	p.dead = fmt.Errorf("%s exited (%v); stderr: %s", p.name, err, p.stderr.String())
	for id, ch := range p.pending {
		ch <- Reply{Err: p.dead}
		delete(p.pending, id)
	}
	p.mu.Unlock()
}

// Send writes req (it sets req["id"]) and returns the channel its reply
// arrives on (buffered: nobody needs to read it).
func (p *Proc) Send(req map[string]any) <-chan Reply {
	ch := make(chan Reply, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead != nil {
		ch <- Reply{Err: p.dead}
		return ch
	}
	p.next++
	req["id"] = p.next
	b, err := json.Marshal(req)
	if err == nil {
		_, err = p.in.Write(append(b, '\n'))
	}
	if err != nil {
		ch <- Reply{Err: fmt.Errorf("%s: %w", p.name, err)}
		return ch
	}
	p.pending[p.next] = ch
	return ch
}

// Call sends req and decodes its reply into out (if not nil).
func (p *Proc) Call(req map[string]any, out any) error {
	r := <-p.Send(req)
	if r.Err != nil {
		return r.Err
	}
	if out != nil {
		if err := json.Unmarshal(r.Raw, out); err != nil {
			return fmt.Errorf("%s: reply to %v: %w", p.name, req["op"], err)
		}
	}
	return nil
}

// Async runs Call in a goroutine; the returned function waits for it.
func (p *Proc) Async(req map[string]any, out any) func() error {
	done := make(chan error, 1)
	go func() { done <- p.Call(req, out) }()
	return func() error { return <-done }
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop asks the process to quit (request {"op": "quit"}, its reply not
// awaited), closes its stdin and waits for it to exit, killing it after
// 5 s; then it waits until its output is read.
func (p *Proc) Stop() {
	p.mu.Lock()
	dead := p.dead != nil
	p.mu.Unlock()
	if !dead {
		p.Send(map[string]any{"op": "quit"})
	}
	_ = p.in.Close()
	exited := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(stopWait):
		_ = p.cmd.Process.Kill()
		<-exited
	}
	<-p.done
}

// tail keeps the last 4 KiB a process wrote to stderr (for error messages).
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
