//go:build unix

package ephemeral

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time this process used so far (user + system, every thread,
// garbage collector included). Benchmarks report it per op next to wall time, which on a
// loaded machine also counts the time spent waiting for a core.
func cpuTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
