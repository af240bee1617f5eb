package meet

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newPeer(t *testing.T, name string) *repo.Repo {
	t.Helper()
	cfg := repo.LocalConfig()
	cfg.Name = name
	rp, err := repo.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rp.Close() })
	return rp
}

func join(t *testing.T, rp *repo.Repo, id string) *room.Room {
	t.Helper()
	rm, err := rp.JoinRoom(context.Background(), id, room.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return rm
}

// WaitMembers returns once another peer is in the room, and fails after its
// timeout, saying how many came, when nobody does.
func TestWaitMembers(t *testing.T) {
	alice := newPeer(t, "alice")
	rm := join(t, alice, "wait-test")
	start := time.Now()
	err := WaitMembers(context.Background(), alice.Host(), rm, 1, 200*time.Millisecond, time.Time{})
	var te *TimeoutError
	if !errors.As(err, &te) || te.Members != 0 || te.Want != 1 || te.Room != "wait-test" ||
		err.Error() != `timed out after 200ms in room "wait-test": 0 other members, want 1` {
		t.Fatalf("alone: err = %v", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("gave up after %v, before its timeout", took)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WaitMembers(ctx, alice.Host(), rm, 1, time.Minute, time.Time{}); err != context.Canceled {
		t.Fatalf("cancelled: err = %v", err)
	}

	done := make(chan error, 1)
	go func() { done <- WaitMembers(context.Background(), alice.Host(), rm, 1, 20*time.Second, time.Time{}) }()
	bob := newPeer(t, "bob")
	if err := bob.Connect(t.Context(), alice.Addrs()[0].String()); err != nil {
		t.Fatal(err)
	}
	join(t, bob, "wait-test")
	if err := <-done; err != nil {
		t.Fatalf("with bob joining: %v", err)
	}
	if n := len(rm.Members()); n != 2 {
		t.Fatalf("WaitMembers returned with %d members", n)
	}
}
