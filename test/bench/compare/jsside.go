package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
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
	cands := []string{dir}
	if dir == "" {
		_, file, _, ok := runtime.Caller(0)
		if ok {
			cands = []string{filepath.Dir(file)}
		}
		cands = append(cands, ".", filepath.Join("test", "bench", "compare"))
	}
	for _, d := range cands {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "bench.mjs")); err == nil {
			return filepath.Abs(d)
		}
	}
	return "", errors.New("compare: bench.mjs not found; run from the repository root or pass -dir")
}

// runJS runs bench.mjs in dir, after `npm ci` if node_modules is missing, and checks that the
// installed packages are the pinned versions. progress gets npm's and node's stderr.
func runJS(dir string, st settings, sizes []int, progress io.Writer) (*jsResult, error) {
	if _, err := exec.LookPath("node"); err != nil {
		return nil, fmt.Errorf("compare: node not found (install Node.js >= 18, or pass -js=false): %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "loro-crdt", "package.json")); err != nil {
		fmt.Fprintln(progress, "compare: node_modules missing, running npm ci")
		cmd := exec.Command("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
		cmd.Dir = dir
		cmd.Stdout = progress
		cmd.Stderr = progress
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("compare: npm ci: %w", err)
		}
	}
	want, err := pinnedVersions(dir)
	if err != nil {
		return nil, err
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
	for _, p := range pinned {
		if res.Versions[p] != want[p] {
			return nil, fmt.Errorf("compare: %s %s installed, package.json pins %s: run npm ci in %s", p, res.Versions[p], want[p], dir)
		}
	}
	return &res, nil
}

// pinnedVersions reads the exact versions from package.json.
func pinnedVersions(dir string) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		return nil, fmt.Errorf("compare: package.json: %w", err)
	}
	for _, p := range pinned {
		if pkg.Dependencies[p] == "" {
			return nil, fmt.Errorf("compare: package.json does not pin %s", p)
		}
	}
	return pkg.Dependencies, nil
}
