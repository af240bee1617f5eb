//go:build !unix

package main

import "time"

func cpuTime() (user, sys time.Duration) { return 0, 0 }
func resetPeakRSS() bool                 { return false }
func peakRSS() int64                     { return 0 }
func currentRSS() int64                  { return 0 }
