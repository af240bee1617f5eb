package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestProcessWarnsWhenMDNSCannotStart runs `peer run` (mDNS on, the default)
// in a fresh network namespace whose only interface is lo without the
// MULTICAST flag, where mDNS cannot start: the node must keep running and
// say so in one error event right after ready.
func TestProcessWarnsWhenMDNSCannotStart(t *testing.T) {
	bin := peerBinary(t)
	ns := netns(t, "cvpeer", false) // lo without MULTICAST: mDNS cannot start

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, bin, "run", "--json", "--ephemeral", "--name", "solo", "--room", "r")
	cmd.Stdin = strings.NewReader("quit\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("peer run: %v\n%s", err, out)
	}
	var types []string
	var warning string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("not NDJSON: %q", line)
		}
		typ, _ := ev["type"].(string)
		types = append(types, typ)
		if typ == "error" && warning == "" {
			warning, _ = ev["error"].(string)
		}
	}
	if len(types) < 2 || types[0] != "ready" || types[1] != "error" {
		t.Fatalf("events %v: want ready, then the mDNS error", types)
	}
	if !strings.Contains(warning, "LAN discovery (mDNS) is not running") || !strings.Contains(warning, "--bootstrap") {
		t.Fatalf("warning %q does not say mDNS is off and what to do", warning)
	}
	if types[len(types)-1] != "stopped" {
		t.Fatalf("events %v: the node did not keep running to a clean stop", types)
	}
}

// skipUnlessCI skips outside CI; in CI (CI=true) the test must run.
func skipUnlessCI(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "" {
		t.Skip(why)
	}
	t.Fatalf("CI=%s but %s", os.Getenv("CI"), why)
}
