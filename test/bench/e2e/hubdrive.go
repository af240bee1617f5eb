package main

import (
	"encoding/json"
	"os/exec"

	"github.com/convene-p2p/convene/test/bench/internal/benchproc"
)

// hproc is one process of the hub comparison (a Convene node process, a
// y-websocket client process or the hub server) and the line protocol to
// it (hubproc.go, yhub/lines.mjs).
type hproc = benchproc.Proc

type hreply = benchproc.Reply

// hubEvent is an event line of a process: node recv first saw (seen) or
// dropped (gone) node peer's cursor at t (CLOCK_MONOTONIC ns).
type hubEvent struct {
	Ev     string `json:"ev"`
	Recv   int    `json:"recv"`
	Peer   int    `json:"peer"`
	T      int64  `json:"t"`
	Reason string `json:"reason"`
}

// startHProc starts cmd; ev, if not nil, gets its event lines.
func startHProc(name string, cmd *exec.Cmd, ev func(hubEvent)) (*hproc, error) {
	var onEvent func([]byte)
	if ev != nil {
		onEvent = func(line []byte) {
			var e hubEvent
			if json.Unmarshal(line, &e) == nil {
				ev(e)
			}
		}
	}
	return benchproc.Start(name, cmd, onEvent)
}
