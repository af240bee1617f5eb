package main

import (
	"syscall"
	"unsafe"
)

// clockName tells the JS peers which clock mono reads (peer.mjs).
const clockName = "mono"

// mono is CLOCK_MONOTONIC in nanoseconds: one clock for every process on
// the machine (Node's process.hrtime reads it too), so a send time in one
// peer and a receive time in another compare directly.
func mono() int64 {
	var ts syscall.Timespec
	_, _, _ = syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1 /* CLOCK_MONOTONIC */, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}
