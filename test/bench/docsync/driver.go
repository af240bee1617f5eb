package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

// proc is one peer process (Go or JS) and the line protocol to it.
type proc struct {
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser

	mu      sync.Mutex
	next    int
	pending map[int]chan reply
	dead    error
	stderr  *tail
}

type reply struct {
	raw json.RawMessage
	err error
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

func startProc(name string, cmd *exec.Cmd) (*proc, error) {
	p := &proc{name: name, cmd: cmd, pending: map[int]chan reply{}, stderr: &tail{}}
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

func (p *proc) read(out io.Reader) {
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<28)
	for sc.Scan() {
		line := slicesClone(sc.Bytes())
		var head struct {
			ID    int    `json:"id"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal(line, &head); err != nil {
			continue // not a reply (a library printing to stdout)
		}
		p.mu.Lock()
		ch := p.pending[head.ID]
		delete(p.pending, head.ID)
		p.mu.Unlock()
		if ch == nil {
			continue
		}
		if head.Error != "" {
			ch <- reply{err: fmt.Errorf("%s: %s", p.name, head.Error)}
		} else {
			ch <- reply{raw: line}
		}
	}
	err := sc.Err()
	if err == nil {
		err = io.EOF
	}
	p.mu.Lock()
	p.dead = fmt.Errorf("%s exited (%v); stderr: %s", p.name, err, p.stderr.String())
	for id, ch := range p.pending {
		ch <- reply{err: p.dead}
		delete(p.pending, id)
	}
	p.mu.Unlock()
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

// call sends req (its op and arguments) and decodes the reply into out.
func (p *proc) call(req map[string]any, out any) error {
	ch := make(chan reply, 1)
	p.mu.Lock()
	if p.dead != nil {
		p.mu.Unlock()
		return p.dead
	}
	p.next++
	id := p.next
	p.pending[id] = ch
	req["id"] = id
	b, err := json.Marshal(req)
	if err == nil {
		_, err = p.in.Write(append(b, '\n'))
	}
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	r := <-ch
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

// async runs call in a goroutine; the returned function waits for it.
func (p *proc) async(req map[string]any, out any) func() error {
	done := make(chan error, 1)
	go func() { done <- p.call(req, out) }()
	return func() error { return <-done }
}

func (p *proc) stop() {
	_ = p.call(map[string]any{"op": "quit"}, nil)
	_ = p.in.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// side is one implementation under test: how to start its peers and how a
// peer names the address of another.
type side struct {
	name  string
	start func(name string) (*proc, error)
	dial  func(port int, peer string) (string, error)
}

func goSide() side { return goSideWith(true) }

// goSideWith is goSide with document head announcements on or off in its
// peers (repo.Config.DisableAnnouncements, through noAnnounceEnv).
func goSideWith(announce bool) side {
	name := "Convene"
	if !announce {
		name = "Convene, announcements off"
	}
	return side{
		name: name,
		start: func(name string) (*proc, error) {
			exe, err := os.Executable()
			if err != nil {
				return nil, err
			}
			cmd := exec.Command(exe)
			cmd.Env = append(os.Environ(), peerEnv+"=1")
			if !announce {
				cmd.Env = append(cmd.Env, noAnnounceEnv+"=1")
			}
			return startProc("convene "+name, cmd)
		},
		dial: dialAddr,
	}
}

// jsPinned are the packages package.json pins, checked against what the
// peers load.
var jsPinned = []string{"@automerge/automerge", "@automerge/automerge-repo", "@automerge/automerge-repo-network-websocket"}

func jsSide(dir string) side {
	return side{
		name: "automerge-repo",
		start: func(name string) (*proc, error) {
			cmd := exec.Command("node", "peer.mjs")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "CONVENE_DOCSYNC_CLOCK="+clockName)
			return startProc("automerge-repo "+name, cmd)
		},
		dial: func(port int, _ string) (string, error) { return fmt.Sprintf("ws://127.0.0.1:%d", port), nil },
	}
}

// jsInfo is what a JS peer says about itself (hello).
type jsInfo struct {
	Node     string            `json:"node"`
	Versions map[string]string `json:"versions"`
}

// prepareJS finds peer.mjs, runs npm ci if node_modules is missing, and
// checks that the installed packages are the pinned ones.
func prepareJS(progress io.Writer) (string, *jsInfo, error) {
	dir, err := benchDir()
	if err != nil {
		return "", nil, err
	}
	if _, err := exec.LookPath("node"); err != nil {
		return "", nil, fmt.Errorf("node not found (install Node.js >= 18, or pass -js=false): %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@automerge", "automerge-repo", "package.json")); err != nil {
		fmt.Fprintln(progress, "docsync: node_modules missing, running npm ci")
		cmd := exec.Command("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
		cmd.Dir, cmd.Stdout, cmd.Stderr = dir, progress, progress
		if err := cmd.Run(); err != nil {
			return "", nil, fmt.Errorf("npm ci: %w", err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return "", nil, err
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		return "", nil, fmt.Errorf("package.json: %w", err)
	}
	p, err := jsSide(dir).start("hello")
	if err != nil {
		return "", nil, err
	}
	defer p.stop()
	var info jsInfo
	if err := p.call(map[string]any{"op": "hello"}, &info); err != nil {
		return "", nil, err
	}
	for _, name := range jsPinned {
		if pkg.Dependencies[name] == "" || info.Versions[name] != pkg.Dependencies[name] {
			return "", nil, fmt.Errorf("%s %s installed, package.json pins %q: run npm ci in %s", name, info.Versions[name], pkg.Dependencies[name], dir)
		}
	}
	return dir, &info, nil
}

// benchDir is this package's folder (peer.mjs, package.json): this source
// file's folder (go run and go test keep absolute paths), else ./ or
// ./test/bench/docsync.
func benchDir() (string, error) {
	var cands []string
	if _, file, _, ok := runtime.Caller(0); ok {
		cands = append(cands, filepath.Dir(file))
	}
	cands = append(cands, ".", filepath.Join("test", "bench", "docsync"))
	for _, d := range cands {
		if _, err := os.Stat(filepath.Join(d, "peer.mjs")); err == nil {
			return filepath.Abs(d)
		}
	}
	return "", errors.New("peer.mjs not found: run from the repository root")
}
