//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package main

// lockKey is a no-op where flock(2) is not available.
func lockKey(string) (func(), error) { return func() {}, nil }
