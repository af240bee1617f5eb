package node

import (
	"os"
	"os/exec"
	"strings"
)

// RawTerminal switches the terminal in (os.Stdin, say) to byte-at-a-time
// input without echo or signal keys, using stty so that no terminal
// library is needed, and returns the function that restores the saved
// mode. It reports false, changing nothing, when in or one of also (the
// output, say) is not a terminal or stty is missing.
func RawTerminal(in *os.File, also ...*os.File) (restore func(), ok bool) {
	for _, f := range append([]*os.File{in}, also...) {
		fi, err := f.Stat()
		if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			return nil, false
		}
	}
	stty := func(args ...string) (string, error) {
		cmd := exec.Command("stty", args...)
		cmd.Stdin = in
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	saved, err := stty("-g")
	if err != nil {
		return nil, false
	}
	if _, err := stty("-icanon", "-echo", "-isig", "min", "1", "time", "0"); err != nil {
		return nil, false
	}
	return func() { _, _ = stty(saved) }, true
}
