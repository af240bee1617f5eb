// Package rooms_test runs Convene rooms between several real libp2p hosts
// (loopback TCP or mocknet) with real GossipSub: the seed's scenarios,
// join snapshot, leave, crash, restart, lifecycle, coalescing, hostile
// peers and partitions. Timings use room.LocalConfig (Timeout 3 s).
package rooms_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
