package benchproc

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// FindDir returns the absolute path of the first folder holding marker (a
// file name): first the calling source file's folder joined with sub (go
// run and go test keep absolute source paths), then each of fallbacks
// (relative to the working directory, e.g. "test/bench/docsync").
func FindDir(marker, sub string, fallbacks ...string) (string, error) {
	var cands []string
	if _, file, _, ok := runtime.Caller(1); ok {
		cands = append(cands, filepath.Join(filepath.Dir(file), sub))
	}
	cands = append(cands, fallbacks...)
	for _, d := range cands {
		if _, err := os.Stat(filepath.Join(d, marker)); err == nil {
			return filepath.Abs(d)
		}
	}
	return "", fmt.Errorf("%s not found: run from the repository root", marker)
}

// NPMInstall checks that node is installed and runs `npm ci --ignore-scripts`
// in dir if node_modules/probe/package.json is missing (probe: one pinned
// package, e.g. "@y/websocket-server"); npm writes to progress.
func NPMInstall(dir, probe string, progress io.Writer) error {
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("node not found (install Node.js >= 18): %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", probe, "package.json")); err == nil {
		return nil
	}
	fmt.Fprintf(progress, "%s: node_modules missing, running npm ci\n", dir)
	cmd := exec.Command("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, progress, progress
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("npm ci in %s: %w", dir, err)
	}
	return nil
}

// Pinned reads the versions dir/package.json pins for names; it is an
// error if one of them is not pinned.
func Pinned(dir string, names []string) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return nil, err
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		return nil, fmt.Errorf("%s/package.json: %w", dir, err)
	}
	out := make(map[string]string, len(names))
	for _, n := range names {
		if pkg.Dependencies[n] == "" {
			return nil, fmt.Errorf("%s/package.json does not pin %s", dir, n)
		}
		out[n] = pkg.Dependencies[n]
	}
	return out, nil
}

// CheckPinned reports the first package whose loaded version (as the
// process says) differs from the pinned one.
func CheckPinned(dir string, pinned, loaded map[string]string) error {
	for n, want := range pinned {
		if loaded[n] != want {
			return fmt.Errorf("%s %s installed, package.json pins %q: run npm ci in %s", n, loaded[n], want, dir)
		}
	}
	return nil
}
