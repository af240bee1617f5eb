package main

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs every workload with tiny counts, Convene and (if node is
// installed: it is on the project's machines and in CI) automerge-repo, and
// checks that the report is well formed: every row, a figure in every
// cell, a ratio where both sides ran, every change delivered to every
// peer. It does not judge the figures. Each workload checks its own end
// state (both peers hold the same heads and text, the peers were apart
// while editing offline, Convene's events name the remote peer as origin).
//
// The Convene half needs the repo's document sync (branch wt/sync, not yet
// in this branch): until it is merged it runs only with
// CONVENE_DOCSYNC_SMOKE=1; TestSmokeAutomergeRepo runs the other half.
func TestSmoke(t *testing.T) {
	if os.Getenv("CONVENE_DOCSYNC_SMOKE") != "1" {
		t.Skip("needs repo document sync (wt/sync); set CONVENE_DOCSYNC_SMOKE=1")
	}
	smoke(t, false)
}

// TestSmokeAutomergeRepo is TestSmoke for the automerge-repo side alone.
func TestSmokeAutomergeRepo(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skipf("node not found: %v", err)
	}
	smoke(t, true)
}

func smoke(t *testing.T, jsOnly bool) {
	o := defaults()
	o.skipConvene = jsOnly
	o.rounds, o.latN, o.warm = 1, []int{3, 3}, 2
	o.fetch, o.offline = 50, 10
	o.meshN, o.meshK = 3, 3
	o.timeout = 60 * time.Second
	if _, err := exec.LookPath("node"); err != nil {
		t.Logf("node not found: Convene side only (%v)", err)
		o.js = false
	}
	var out, progress bytes.Buffer
	o.progress = &progress
	if err := run(o, &out); err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	s := out.String()
	t.Log("\n" + s)
	if !strings.Contains(s, tableHeader) {
		t.Fatalf("no table header %q", tableHeader)
	}
	figure := regexp.MustCompile(`^[0-9]+(\.[0-9]+)? (ms|B)$`)
	ratio := regexp.MustCompile(`^[0-9]+\.[0-9]{2}×$`)
	rows := 0
	for _, l := range strings.Split(s[strings.Index(s, tableHeader):], "\n")[2:] {
		if !strings.HasPrefix(l, "| ") {
			break
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		if len(cells) != 6 {
			t.Errorf("row of %d cells: %s", len(cells), l)
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows++
		if !jsOnly && !figure.MatchString(cells[1]) {
			t.Errorf("Convene cell %q: %s", cells[1], l)
		}
		if o.js && jsOnly && !figure.MatchString(cells[2]) {
			t.Errorf("automerge-repo cell %q: %s", cells[2], l)
		}
		if o.js && !jsOnly {
			if !figure.MatchString(cells[2]) {
				t.Errorf("automerge-repo cell %q: %s", cells[2], l)
			}
			if !ratio.MatchString(cells[3]) {
				t.Errorf("ratio cell %q: %s", cells[3], l)
			}
			if cells[4] != "–" && cells[5] != "yes" && cells[5] != "**no**" {
				t.Errorf("a target without a verdict: %s", l)
			}
		}
	}
	for _, w := range []string{"latency p50, 10 changes/s", "latency p99, 100 changes/s", "initial fetch, 50-change doc", "initial fetch: bytes", "convergence, 10 + 10 offline", "| 1 |"} {
		if !strings.Contains(s, w) {
			t.Errorf("report lacks %q", w)
		}
	}
	if rows != 9 {
		t.Errorf("%d rows in the main table, want 9", rows)
	}
	if jsOnly {
		return
	}
	want := "| delivered to every other peer | 18 of 18 (100.00 %) |" // 3 peers × 2 others × 3 changes
	if !strings.Contains(s, want) {
		t.Errorf("report lacks %q", want)
	}
	if !regexp.MustCompile(`\| CPU per change per peer [^|]*\| [0-9.]+ µs / [0-9.]+ µs \|`).MatchString(s) {
		t.Error("no CPU per change figure")
	}
}
