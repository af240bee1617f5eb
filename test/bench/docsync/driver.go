package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/convene-p2p/convene/test/bench/internal/benchproc"
)

// proc is one peer process (Go or JS) and the line protocol to it
// (peer.go, peer.mjs).
type proc = benchproc.Proc

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
			return benchproc.Start("convene "+name, cmd, nil)
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
			return benchproc.Start("automerge-repo "+name, cmd, nil)
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
	dir, err := benchproc.FindDir("peer.mjs", "", ".", filepath.Join("test", "bench", "docsync"))
	if err != nil {
		return "", nil, err
	}
	if err := benchproc.NPMInstall(dir, "@automerge/automerge-repo", progress); err != nil {
		return "", nil, fmt.Errorf("docsync: %w (or pass -js=false)", err)
	}
	pinned, err := benchproc.Pinned(dir, jsPinned)
	if err != nil {
		return "", nil, err
	}
	p, err := jsSide(dir).start("hello")
	if err != nil {
		return "", nil, err
	}
	defer p.Stop()
	var info jsInfo
	if err := p.Call(map[string]any{"op": "hello"}, &info); err != nil {
		return "", nil, err
	}
	if err := benchproc.CheckPinned(dir, pinned, info.Versions); err != nil {
		return "", nil, err
	}
	return dir, &info, nil
}
