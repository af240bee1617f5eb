package main

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"
)

// The first signal cancels ctx (graceful shutdown), the second abort
// (stop at once); a third is left to the default handling.
func TestSignalsCancelCtxThenAbort(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	abort, cancelAbort := context.WithCancel(context.Background())
	defer cancelAbort()
	all := make(chan bool, 1)
	go func() { all <- forwardSignals(sigs, done, cancel, cancelAbort) }()

	deadline := time.After(10 * time.Second)
	sigs <- os.Interrupt
	select {
	case <-ctx.Done():
	case <-deadline:
		t.Fatal("the first signal did not cancel ctx")
	}
	if abort.Err() != nil {
		t.Fatal("the first signal cancelled abort too")
	}
	sigs <- syscall.SIGTERM
	select {
	case <-abort.Done():
	case <-deadline:
		t.Fatal("the second signal did not cancel abort")
	}
	if !<-all {
		t.Error("forwardSignals reported that not every stop was called")
	}
	close(done)
}

// A first signal is a graceful stop: the node leaves its rooms with a
// goodbye, so the other member sees reason left.
func TestRunInProcessSignalSaysGoodbye(t *testing.T) {
	alice, bob, aliceID := twoInProcess(t)
	mark := bob.mark()
	alice.cancel() // the first SIGINT/SIGTERM
	if s := alice.next("stopped", isType("stopped")); s["reason"] != "signal" {
		t.Errorf("stopped = %v, want reason signal", s)
	}
	if code := <-alice.code; code != 0 {
		t.Errorf("exit %d after a signal, want 0", code)
	}
	if ev := bob.waitFrom(mark, 20*time.Second, "alice gone", memberLeft("lobby", aliceID)); ev["reason"] != "left" {
		t.Errorf("bob saw alice go with reason %v, want left (a goodbye)", ev["reason"])
	}
}

// A second signal stops at once: no goodbye is sent any more (the other
// member sees reason timeout, once alice's connections close), the node
// still prints stopped and exits 0. Here the second signal is already in
// when the shutdown begins, so it sends nothing at all.
func TestRunInProcessSecondSignalStopsWithoutGoodbye(t *testing.T) {
	alice, bob, aliceID := twoInProcess(t)
	mark := bob.mark()
	alice.abort()  // the second signal ...
	alice.cancel() // ... and the first
	if s := alice.next("stopped", isType("stopped")); s["reason"] != "signal" {
		t.Errorf("stopped = %v, want reason signal", s)
	}
	if code := <-alice.code; code != 0 {
		t.Errorf("exit %d after two signals, want 0", code)
	}
	if ev := bob.waitFrom(mark, 20*time.Second, "alice gone", memberLeft("lobby", aliceID)); ev["reason"] != "timeout" {
		t.Errorf("bob saw alice go with reason %v, want timeout (no goodbye)", ev["reason"])
	}
	alice.mu.Lock()
	defer alice.mu.Unlock()
	for _, ev := range alice.events {
		if ev["type"] == "error" {
			t.Errorf("alice printed %v, want no error", ev)
		}
	}
}

// twoInProcess runs bob and alice in room lobby, alice bootstrapped from
// bob, until each has seen the other.
func twoInProcess(t *testing.T) (alice, bob *inProcess, aliceID string) {
	t.Helper()
	args := []string{"--json", "--ephemeral", "--no-mdns", "--dht", "off", "--listen", "/ip4/127.0.0.1/tcp/0", "--room", "lobby", "--timeout", "3s"}
	bob = startInProcess(t, append(args, "--name", "bob")...)
	ready := bob.next("bob ready", isType("ready"))
	alice = startInProcess(t, append(args, "--name", "alice", "--bootstrap", tcpAddr(t, ready))...)
	aliceID = alice.next("alice ready", isType("ready"))["peer"].(string)
	bob.next("alice joined", memberJoined("lobby", "alice"))
	alice.next("bob joined", memberJoined("lobby", "bob"))
	return alice, bob, aliceID
}
