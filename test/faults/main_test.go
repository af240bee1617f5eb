// Package faults holds fault tests with real `peer` processes (STYLE.md
// layer 4): restarts behind frozen connections, kill -9 and restart,
// ghosts brought back by relays. Long repeated variants run with
// CONVENE_LONG=1; a few repetitions always run.
package faults

import (
	"os"
	"testing"
)

// reps is the number of repetitions of a repeated fault test: short
// always, long with CONVENE_LONG=1.
func reps(short, long int) int {
	if os.Getenv("CONVENE_LONG") != "" {
		return long
	}
	return short
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }
