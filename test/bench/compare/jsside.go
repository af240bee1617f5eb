package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/convene-p2p/convene/test/bench/internal/benchproc"
)

// jsResult is what bench.mjs prints.
type jsResult struct {
	Node     string            `json:"node"`
	Versions map[string]string `json:"versions"`
	Config   json.RawMessage   `json:"config"`
	Loro     struct {
		BytesShortID int         `json:"bytesShortID"` // key: 20-digit decimal id (loro-extended's peerId)
		BytesPeerID  int         `json:"bytesPeerID"`  // key: 52-character libp2p peer ID string
		KeyShortID   string      `json:"keyShortID"`
		KeyPeerID    string      `json:"keyPeerID"`
		SetEncode    sample      `json:"setEncode"`    // set + encode(key)
		SetSubscribe sample      `json:"setSubscribe"` // set with a subscribeLocalUpdates listener
		Apply        applySample `json:"apply"`
		RealClock    struct {
			Sent    int `json:"sent"`
			Applied int `json:"applied"`
			SpanMs  int `json:"spanMs"`
		} `json:"realClock"`
		Snapshot map[string]snapSample `json:"snapshot"`
	} `json:"loro"`
	Yjs struct {
		Bytes     int                   `json:"bytes"`
		SetEncode sample                `json:"setEncode"`
		Apply     applySample           `json:"apply"`
		Snapshot  map[string]snapSample `json:"snapshot"`
	} `json:"yjs"`
}

// pinned are the exact versions package.json pins.
var pinned = []string{"loro-crdt", "y-protocols", "yjs"}

// benchDir finds the folder holding bench.mjs: dir if given, else this source file's folder (go
// run keeps absolute paths), else ./ or ./test/bench/compare.
func benchDir(dir string) (string, error) {
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "bench.mjs")); err != nil {
			return "", fmt.Errorf("compare: -dir %s: %w", dir, err)
		}
		return filepath.Abs(dir)
	}
	d, err := benchproc.FindDir("bench.mjs", "", ".", filepath.Join("test", "bench", "compare"))
	if err != nil {
		return "", fmt.Errorf("compare: %w (or pass -dir)", err)
	}
	return d, nil
}

// runJS runs bench.mjs in dir, after `npm ci` if node_modules is missing, and checks that the
// installed packages are the pinned versions. progress gets npm's and node's stderr.
func runJS(dir string, st settings, sizes []int, progress io.Writer) (*jsResult, error) {
	if err := benchproc.NPMInstall(dir, "loro-crdt", progress); err != nil {
		return nil, fmt.Errorf("compare: %w (or pass -js=false)", err)
	}
	want, err := benchproc.Pinned(dir, pinned)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	strSizes := make([]string, len(sizes))
	for i, n := range sizes {
		strSizes[i] = strconv.Itoa(n)
	}
	cmd := exec.Command("node", "--expose-gc", "bench.mjs",
		"--runs", strconv.Itoa(st.runs),
		"--min-time", strconv.FormatFloat(st.minTime.Seconds(), 'f', -1, 64),
		"--sizes", strings.Join(strSizes, ","))
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = progress
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("compare: node bench.mjs: %w", err)
	}
	var res jsResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("compare: reading bench.mjs output: %w", err)
	}
	if err := benchproc.CheckPinned(dir, want, res.Versions); err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	return &res, nil
}
