//go:build !unix

package ephemeral

import "time"

func cpuTime() (time.Duration, bool) { return 0, false }
