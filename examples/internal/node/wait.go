package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
)

// RelaySettle is how long a member that is not directly connected must
// have been a member before WaitMembers counts it: it is known from
// another member's join snapshot, and what this peer publishes reaches it
// through that member's GossipSub mesh, which forms at a GossipSub
// heartbeat (250 ms) after they meet. A directly connected member gets
// this peer's messages at once (flood publish) and counts at once.
// (cmd/peer's wait follows the same rule.)
const RelaySettle = time.Second

// WaitMembers waits until rm has at least want members besides this peer
// that this peer's messages reach (see RelaySettle), for at most timeout.
// A program fed a script uses it before it speaks: a peer that has just
// started has met nobody yet, and what it says then reaches nobody. It
// returns ctx's error if ctx ends first, and an error saying how many
// members came on timeout or if the room closes.
func WaitMembers(ctx context.Context, rp *repo.Repo, rm *room.Room, want int, timeout time.Duration) error {
	w := rm.Watch()
	defer w.Close()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	self := rm.Self().Peer
	seen := map[room.PeerID]time.Time{}
	for {
		now := time.Now()
		reached, members := 0, 0
		var next time.Time
		for _, m := range rm.Members() {
			if m.Peer == self {
				continue
			}
			members++
			at, ok := seen[m.Peer]
			if !ok {
				at, seen[m.Peer] = now, now
			}
			ready := at.Add(RelaySettle)
			if rp.Host().Network().Connectedness(peer.ID(m.Peer)) == network.Connected || !now.Before(ready) {
				reached++
			} else if next.IsZero() || ready.Before(next) {
				next = ready
			}
		}
		if reached >= want {
			return nil
		}
		nctx, ncancel := wctx, context.CancelFunc(func() {})
		if !next.IsZero() {
			nctx, ncancel = context.WithDeadline(wctx, next)
		}
		ev, err := w.Next(nctx)
		ncancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case wctx.Err() != nil:
			return fmt.Errorf("%d other member%s in room %q after %v, want %d", members, plural(members), rm.ID(), timeout, want)
		case errors.Is(err, context.DeadlineExceeded):
			continue // a relayed member has settled: count again
		case err != nil || ev.Type == room.RoomDestroyed:
			return fmt.Errorf("room %q was closed", rm.ID())
		}
	}
}

// FlushDelay is how long after its last write or broadcast a peer waits
// before its goodbye: the room paces presence writes (one per
// PublishInterval in a burst, and a goodbye drops a write still waiting),
// and the goodbye travels on a direct stream that can overtake a
// broadcast sent just before it, which the others then drop as coming
// from a peer that left.
const FlushDelay = 2 * room.DefaultPublishInterval

// FlushBeforeLeave waits until FlushDelay has passed since last (at once
// if it has, or if last is zero), or until ctx ends.
func FlushBeforeLeave(ctx context.Context, last time.Time) {
	if last.IsZero() {
		return
	}
	d := FlushDelay - time.Since(last)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
