package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestSmoke runs the benchmark with tiny counts: every workload checks its
// own result; the table has every row. The JS side only with
// CONVENE_COMPARE_JS=1 (it needs node and npm).
func TestSmoke(t *testing.T) {
	o := options{runs: 1, changes: 150, durable: 5, dir: t.TempDir(), js: os.Getenv("CONVENE_COMPARE_JS") == "1"}
	var out, progress bytes.Buffer
	if err := run(o, &out, &progress); err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	s := out.String()
	for _, w := range []string{tableHeader, "map edit", "typing", "save,", "load,", "stored,", "durable save", "debounced"} {
		if !strings.Contains(s, w) {
			t.Errorf("report lacks %q:\n%s", w, s)
		}
	}
}
