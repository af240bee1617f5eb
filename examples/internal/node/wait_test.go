package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/convene-p2p/convene/examples/internal/exampletest"
)

// WaitMembers returns once another peer is in the room, and fails after its
// timeout, saying how many came, when nobody does.
func TestWaitMembers(t *testing.T) {
	rps := exampletest.Peers(t, "alice")
	rm := exampletest.Join(t, "wait-test", rps[0])[0]
	start := time.Now()
	err := WaitMembers(context.Background(), rps[0], rm, 1, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), `0 other members in room "wait-test" after 200ms, want 1`) {
		t.Fatalf("alone: err = %v", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("gave up after %v, before its timeout", took)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WaitMembers(ctx, rps[0], rm, 1, time.Minute); err != context.Canceled {
		t.Fatalf("cancelled: err = %v", err)
	}

	done := make(chan error, 1)
	go func() { done <- WaitMembers(context.Background(), rps[0], rm, 1, 20*time.Second) }()
	bob := exampletest.Peers(t, "bob")[0]
	if err := bob.Connect(t.Context(), rps[0].Addrs()[0].String()); err != nil {
		t.Fatal(err)
	}
	exampletest.Join(t, "wait-test", bob)
	if err := <-done; err != nil {
		t.Fatalf("with bob joining: %v", err)
	}
	if n := len(rm.Members()); n != 2 {
		t.Fatalf("WaitMembers returned with %d members", n)
	}
}
