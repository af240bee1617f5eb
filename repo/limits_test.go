package repo_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/convene-p2p/convene/ephemeral"
	"github.com/convene-p2p/convene/gossip"
	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
)

// The presence limits have one source of truth: limits set on the rooms
// (Config.Room.Limits) are the ones every relay checks, so a value the
// writer's store accepts reaches the other members; a value over them
// fails at the call. Before, the gossip layer kept its default 1 KiB limit:
// the 2000-byte Set succeeded locally and reached nobody, and the writer's
// heartbeats were rejected too.
func TestRoomLimitsAreTheLimitsEveryRelayChecks(t *testing.T) {
	limits := func(c *repo.Config) { c.Room.Limits = ephemeral.Limits{MaxValueSize: 4096, MaxKeysPerPeer: 8} }
	a, b := newRepo(t, limits), newRepo(t, limits)
	ra, rb := join(t, a, "lim"), join(t, b, "lim")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := a.Connect(ctx, b.Addrs()[0].String()); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 2000)
	if err := ra.Set("blob", big); err != nil {
		t.Fatalf("Set of 2000 bytes under a 4096-byte limit: %v", err)
	}
	w := rb.Watch()
	defer w.Close()
	for {
		if v, ok := rb.Get(a.Self().Peer, "blob"); ok && bytes.Equal(v, big) {
			break
		}
		if _, err := w.Next(ctx); err != nil {
			t.Fatalf("B never got A's 2000-byte value: %v (B's gossip stats %+v)", err, b.Stats())
		}
	}
	if s := b.Stats(); s.Oversized != 0 || s.Malformed != 0 {
		t.Errorf("B rejected A's messages: %+v", s)
	}
	err := ra.Set("blob", bytes.Repeat([]byte("x"), 5000))
	if !errors.Is(err, ephemeral.ErrValueTooLarge) {
		t.Errorf("Set of 5000 bytes under a 4096-byte limit = %v, want ErrValueTooLarge", err)
	}
}

// Limits whose full state a heartbeat could not carry within the network's
// MaxMessageSize are refused at JoinRoom, with an error saying what to
// change, instead of heartbeats that every relay would reject later.
func TestJoinRoomRefusesLimitsWhoseHeartbeatExceedsTheMessageSize(t *testing.T) {
	r := newRepo(t, func(c *repo.Config) { c.Room.Limits.MaxValueSize = 4096 }) // 32 keys × 4 KiB > 64 KiB
	_, err := r.JoinRoom(context.Background(), "big", room.Config{})
	if !errors.Is(err, gossip.ErrTooLarge) || !strings.Contains(err.Error(), "MaxMessageSize") {
		t.Fatalf("JoinRoom = %v, want a gossip.ErrTooLarge error naming MaxMessageSize", err)
	}
	if len(r.Rooms()) != 0 {
		t.Errorf("a refused room stays: %v", r.Rooms())
	}
	// Raising the message size makes the same limits fit.
	r2 := newRepo(t, func(c *repo.Config) {
		c.Room.Limits.MaxValueSize = 4096
		c.Gossip.MaxMessageSize = 256 << 10
	})
	join(t, r2, "big")
}

// A room config whose limits differ from the gossip layer's is refused at
// JoinRoom (room.New over a topic that checks other limits), and a Repo
// config that sets both to different values is refused at New.
func TestDifferingLimitsAreAnErrorNotASilentLoss(t *testing.T) {
	r := newRepo(t, nil)
	cfg := room.LocalConfig()
	cfg.Limits.MaxValueSize = 512
	if _, err := r.JoinRoom(context.Background(), "diff", cfg); err == nil || !strings.Contains(err.Error(), "MaxValueSize") {
		t.Errorf("JoinRoom with Limits.MaxValueSize 512 over the default 1024 = %v, want an error naming MaxValueSize", err)
	}
	c := repo.LocalConfig()
	c.Room.Limits.MaxValueSize = 4096
	c.Gossip.Limits.MaxValueSize = 2048
	if rp, err := repo.New(context.Background(), c); err == nil {
		_ = rp.Close()
		t.Error("repo.New accepted Room.Limits.MaxValueSize 4096 with Gossip.Limits.MaxValueSize 2048")
	} else if !strings.Contains(err.Error(), "MaxValueSize") {
		t.Errorf("repo.New error %q does not name the field", err)
	}
}
