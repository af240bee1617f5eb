//go:build !linux

package main

import "time"

// clockName tells the JS peers which clock mono reads (peer.mjs).
const clockName = "wall"

// mono is the wall clock in nanoseconds where CLOCK_MONOTONIC is not read
// directly; every peer process reads the same clock (peer.mjs too).
func mono() int64 { return time.Now().UnixNano() }
