package node

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// openPTY opens a pseudo-terminal and returns its terminal side. It skips
// the test where /dev/ptmx cannot be opened, unless CI is set.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no pseudo-terminal: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ptmx.Close() })
	ioctl := func(req uintptr, arg unsafe.Pointer) {
		t.Helper()
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, ptmx.Fd(), req, uintptr(arg)); errno != 0 {
			t.Fatalf("ioctl %#x on /dev/ptmx: %v", req, errno)
		}
	}
	var unlock int32
	ioctl(syscall.TIOCSPTLCK, unsafe.Pointer(&unlock))
	var n uint32
	ioctl(syscall.TIOCGPTN, unsafe.Pointer(&n))
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tty.Close() })
	return tty
}

// flags reports which of names stty lists among the terminal's settings
// (a name like "-echo" for a setting that is off).
func flags(t *testing.T, tty *os.File, names ...string) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	for _, f := range strings.Fields(modes(t, tty)) {
		set[f] = true
	}
	has := map[string]bool{}
	for _, n := range names {
		has[n] = set[n]
	}
	return has
}

// modes returns the terminal's settings as stty prints them.
func modes(t *testing.T, tty *os.File) string {
	t.Helper()
	cmd := exec.Command("stty", "-a")
	cmd.Stdin = tty
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("stty -a: %v", err)
	}
	return string(out)
}

// On a terminal, RawTerminal turns line editing, echo and signal keys off,
// and the function it returns turns them back on.
func TestRawTerminalSwitchesAndRestores(t *testing.T) {
	if _, err := exec.LookPath("stty"); err != nil {
		t.Skip("no stty")
	}
	tty := openPTY(t)
	before := modes(t, tty)
	for n, ok := range flags(t, tty, "icanon", "echo", "isig") {
		if !ok {
			t.Fatalf("a new terminal is not in line mode (no %s):\n%s", n, before)
		}
	}
	restore, ok := RawTerminal(tty, tty)
	if !ok {
		t.Fatal("RawTerminal did not take a terminal")
	}
	for n, ok := range flags(t, tty, "-icanon", "-echo", "-isig") {
		if !ok {
			t.Errorf("raw mode lacks %s:\n%s", n, modes(t, tty))
		}
	}
	restore()
	if after := modes(t, tty); after != before {
		t.Fatalf("restore left\n%s\nwant\n%s", after, before)
	}
}

// RawTerminal changes nothing and reports false when the input or another
// file is not a terminal.
func TestRawTerminalNotATerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if restore, ok := RawTerminal(r); ok || restore != nil {
		t.Fatal("RawTerminal took a pipe for a terminal")
	}
	if _, err := exec.LookPath("stty"); err != nil {
		return
	}
	tty := openPTY(t)
	before := modes(t, tty)
	if restore, ok := RawTerminal(tty, w); ok || restore != nil {
		t.Fatal("RawTerminal took a pipe as output for a terminal")
	}
	if after := modes(t, tty); after != before {
		t.Fatalf("RawTerminal changed the terminal although it reported false:\n%s", after)
	}
}
