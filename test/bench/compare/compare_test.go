package main

import (
	"bytes"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/convene-p2p/convene/ephemeral"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// tiny settings: the smoke tests check structure and correctness, not speed.
func tinyOptions(js bool) options {
	return options{
		settings: settings{runs: 1, minTime: time.Millisecond},
		rounds:   2,
		sizes:    []int{3, 10},
		epoch:    uint64(time.Now().UnixMilli()),
		js:       js,
	}
}

// tableRows returns the cells of every data row of the Markdown table in out.
func tableRows(t *testing.T, out string) [][]string {
	t.Helper()
	lines := strings.Split(out, "\n")
	start := -1
	for i, l := range lines {
		if l == tableHeader {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("table header %q not in output:\n%s", tableHeader, out)
	}
	if !strings.HasPrefix(lines[start+1], "|---") {
		t.Fatalf("no separator line after the header: %q", lines[start+1])
	}
	var rows [][]string
	for _, l := range lines[start+2:] {
		if !strings.HasPrefix(l, "|") {
			break
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	return rows
}

// cursorMoveBytes does the bytes workload on its own store: the state {name, cursor} exists and was
// sent, then the cursor moves to (fixedX, fixedY).
func cursorMoveBytes(t *testing.T, epoch uint64) int {
	t.Helper()
	now := time.Now()
	s, err := ephemeral.New(ephemeral.Config{Self: peerID(0), Epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(now, "name", []byte(`"alice"`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(now, "cursor", []byte(`{"x":0,"y":0}`)); err != nil {
		t.Fatal(err)
	}
	s.EncodeDelta()
	if _, err := s.Set(now, "cursor", []byte(`{"x":1280,"y":720}`)); err != nil {
		t.Fatal(err)
	}
	return len(s.EncodeDelta())
}

// TestGoSideSmoke runs the Convene side with tiny counts (no node needed) and checks that the
// table has its columns and rows, that Convene's figures are positive, that the JS columns say
// n/a, and that the byte count is len(EncodeDelta()) of a real store doing the same cursor move.
func TestGoSideSmoke(t *testing.T) {
	o := tinyOptions(false)
	rep, err := compare(o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	writeReport(&out, rep)
	rows := tableRows(t, out.String())
	if want := 4 + 2*len(o.sizes); len(rows) != want {
		t.Fatalf("table has %d rows, want %d:\n%s", len(rows), want, out.String())
	}
	for _, r := range rows {
		if len(r) != 9 {
			t.Fatalf("row %q has %d cells, want 9", r, len(r))
		}
		if r[1] != "n/a" || r[2] != "n/a" {
			t.Errorf("row %q: Loro/Yjs columns should be n/a without the JS side", r[0])
		}
		num, _, _ := strings.Cut(r[3], " ")
		if v, err := strconv.ParseFloat(num, 64); err != nil || !(v > 0) {
			t.Errorf("row %q: Convene cell %q is not a positive number", r[0], r[3])
		}
	}
	want := cursorMoveBytes(t, o.epoch)
	if rep.Convene.Bytes != want {
		t.Errorf("Convene bytes = %d, len(EncodeDelta()) of a real store = %d", rep.Convene.Bytes, want)
	}
	if rows[0][3] != strconv.Itoa(want)+" B" {
		t.Errorf("bytes row shows %q, want %q", rows[0][3], strconv.Itoa(want)+" B")
	}
	if rep.Convene.BytesAfterHour < rep.Convene.Bytes {
		t.Errorf("delta after an hour of moves (%d B) is smaller than the first (%d B)", rep.Convene.BytesAfterHour, rep.Convene.Bytes)
	}
	if v := rep.Convene.Apply.Verified; v.Sent == 0 || v.Applied != v.Sent {
		t.Errorf("Convene apply verified %+v, want every update applied", v)
	}
	if got, want := len(rep.Convene.SetEncode.RunsNsPerOp), o.rounds*o.runs; got != want {
		t.Errorf("set+encode has %d runs after %d rounds of %d, want %d", got, o.rounds, o.runs, want)
	}
	for _, n := range o.sizes {
		k := strconv.Itoa(n)
		if rep.Convene.SnapshotTrusted[k].Bytes == 0 || rep.Convene.SnapshotPerAuthor[k].Bytes == 0 {
			t.Errorf("%d-peer snapshot sizes missing", n)
		}
	}
}

// TestRowTarget checks the ratio and target logic: lower is better for bytes and times, higher
// for rates, and "best" is the better of the two libraries.
func TestRowTarget(t *testing.T) {
	tests := []struct {
		name string
		r    row
		q    float64
		ok   bool
	}{
		{"bytes under 0.7x Loro", row{Loro: 62, Yjs: 52, Convene: 40, TargetVs: "Loro", TargetRatio: 0.7}, 40.0 / 62, true},
		{"bytes over 0.7x Loro", row{Loro: 62, Yjs: 52, Convene: 50, TargetVs: "Loro", TargetRatio: 0.7}, 50.0 / 62, false},
		{"rate 2x the faster", row{Loro: 100, Yjs: 300, Convene: 600, HigherBetter: true, TargetVs: "best", TargetRatio: 2}, 2, true},
		{"rate 2x the slower only", row{Loro: 100, Yjs: 300, Convene: 500, HigherBetter: true, TargetVs: "best", TargetRatio: 2}, 500.0 / 300, false},
		{"time half of Loro", row{Loro: 800, Yjs: 1000, Convene: 300, TargetVs: "Loro", TargetRatio: 0.5}, 300.0 / 800, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, ok := tt.r.target()
			if math.Abs(q-tt.q) > 1e-9 || ok != tt.ok {
				t.Errorf("target() = %v, %v; want %v, %v", q, ok, tt.q, tt.ok)
			}
		})
	}
	if q, _ := (row{Convene: 1, Loro: math.NaN(), TargetVs: "Loro", TargetRatio: 0.7}).target(); !math.IsNaN(q) {
		t.Errorf("target without a Loro figure = %v, want NaN", q)
	}
}

// TestJSSide runs both sides with tiny counts. It needs node and npm (it runs npm ci if
// node_modules is missing), so it runs only with CONVENE_COMPARE_JS=1.
func TestJSSide(t *testing.T) {
	if os.Getenv("CONVENE_COMPARE_JS") != "1" {
		t.Skip("set CONVENE_COMPARE_JS=1 to run the JS side (needs node and npm)")
	}
	o := tinyOptions(true)
	o.minTime = 10 * time.Millisecond
	rep, err := compare(o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	writeReport(&out, rep)
	rows := tableRows(t, out.String())
	if want := 4 + 2*len(o.sizes); len(rows) != want {
		t.Fatalf("table has %d rows, want %d", len(rows), want)
	}
	for _, r := range rows {
		for i, c := range r[1:7] {
			if c == "n/a" {
				t.Errorf("row %q: column %d is n/a with the JS side run", r[0], i+1)
			}
		}
	}
	j := rep.JS
	// The two Loro keys differ by 52-20 characters; the rest of the update is the same.
	if d := j.Loro.BytesPeerID - j.Loro.BytesShortID; d != 32 {
		t.Errorf("Loro peer-ID update is %d B longer than the short-id one, want 32", d)
	}
	if v := j.Loro.Apply.Verified; v.Sent == 0 || v.Applied != v.Sent {
		t.Errorf("Loro apply verified %+v, want every update applied", v)
	}
	if v := j.Yjs.Apply.Verified; v.Sent == 0 || v.Applied != v.Sent {
		t.Errorf("Yjs apply verified %+v, want every update applied", v)
	}
	if rc := j.Loro.RealClock; rc.Applied >= rc.Sent {
		t.Logf("Loro with the real clock applied %d of %d (no same-millisecond loss on this run)", rc.Applied, rc.Sent)
	}
}
