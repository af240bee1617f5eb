//go:build !linux

package main

import "time"

var monoStart = time.Now()

// mono is a monotonic clock in nanoseconds, per process here: the hub
// comparison compares times across processes only on Linux.
func mono() int64 { return int64(time.Since(monoStart)) }

// tcpBytes is not measured outside Linux (TCP_INFO).
func tcpBytes() (tx, rx int64) { return 0, 0 }
