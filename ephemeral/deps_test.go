package ephemeral

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoLibp2pImports keeps ephemeral/ pure (DESIGN.md, layout table): nothing from
// libp2p, multiformats or IPFS, in the package or its tests, and only the standard library
// in the package itself. If a wire codec is ever added on purpose, list it here.
func TestNoLibp2pImports(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	list := func(args ...string) []string {
		t.Helper()
		out, err := exec.Command(goBin, append([]string{"list", "-deps"}, args...)...).Output()
		if err != nil {
			msg := ""
			if ee, ok := err.(*exec.ExitError); ok {
				msg = string(ee.Stderr)
			}
			t.Fatalf("go list %v: %v\n%s", args, err, msg)
		}
		return strings.Fields(string(out))
	}
	for _, pkg := range list("-test", ".") {
		for _, banned := range []string{"libp2p", "multiformats", "ipfs", "multiaddr"} {
			if strings.Contains(pkg, banned) {
				t.Errorf("ephemeral depends on %s", pkg)
			}
		}
	}
	const self = "github.com/convene-p2p/convene/ephemeral"
	for _, pkg := range list("-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".") {
		if pkg != self {
			t.Errorf("ephemeral imports %s; only the standard library is allowed", pkg)
		}
	}
}
