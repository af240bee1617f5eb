package doc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func goList(t *testing.T, env []string, args ...string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	cmd := exec.Command(goBin, append([]string{"list"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// doc/ never imports libp2p (DESIGN.md: the network is docsync's).
func TestDocDoesNotImportLibp2p(t *testing.T) {
	for _, pkg := range strings.Fields(goList(t, nil, "-deps", ".", "../storage")) {
		if strings.Contains(pkg, "libp2p") || strings.Contains(pkg, "multiaddr") {
			t.Errorf("doc or storage depends on %s", pkg)
		}
	}
}

// The presence layers build without cgo: none of them reaches automerge-go
// (cgo only), and with CGO_ENABLED=0 no package they need fails to load.
// CI also builds them so (.ci/run).
func TestPresenceLayersNeedNoCgo(t *testing.T) {
	out := goList(t, []string{"CGO_ENABLED=0"}, "-e", "-deps",
		"-f", "{{.ImportPath}}{{if .Error}} ERROR {{.Error}}{{end}}",
		"../ephemeral", "../room", "../gossip", "../p2p")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(line, "automerge") || strings.Contains(line, "/doc") && strings.Contains(line, "convene") {
			t.Errorf("a presence layer depends on %s", line)
		}
		if strings.Contains(line, " ERROR ") {
			t.Errorf("without cgo: %s", line)
		}
	}
}
