//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockKey takes an exclusive advisory lock on keyFile+".lock", so that two
// `peer run` processes never run with the same identity (two hosts with one
// peer ID confuse every other peer). It returns a function that releases
// the lock. If the lock file cannot be created (a read-only directory, for
// instance) it gives up quietly: the lock is a guard, not a requirement.
func lockKey(keyFile string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		return func() {}, nil
	}
	f, err := os.OpenFile(keyFile+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return func() {}, nil
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("key file %s is in use by another running peer; give this one its own --key FILE (or a different --name)", keyFile)
		}
		return func() {}, nil
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
