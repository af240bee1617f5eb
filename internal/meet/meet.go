// Package meet is what a scripted peer (the peer CLI, the examples) needs
// around a room: wait until it has met the room before it speaks, and let
// its last messages go out before its goodbye.
package meet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/room"
)

// RelaySettle is how long a member that is not directly connected must
// have been a member before WaitMembers counts it. Such a member is known
// from another member's join snapshot; what this peer publishes reaches it
// through that member's GossipSub mesh, which forms at a GossipSub
// heartbeat (250 ms) after they meet. A directly connected member gets
// this peer's messages at once (flood publish) and counts at once.
const RelaySettle = time.Second

// FlushDelay is how long after its last write or broadcast a peer waits
// before its goodbye. The room publishes a write still held by its pacing
// before the goodbye, and the direct goodbye waits for earlier messages
// to be written; but the receiver's pubsub validates messages in parallel
// and may still deliver a message sent just before the goodbye after it,
// and the receiver then drops it as coming from a peer that left. Two
// publish intervals let the last message arrive well before the goodbye.
const FlushDelay = 2 * room.DefaultPublishInterval

// ErrRoomClosed is returned by WaitMembers when the room closes first.
var ErrRoomClosed = errors.New("room was closed")

// TimeoutError is returned by WaitMembers when too few members came.
type TimeoutError struct {
	Room          string
	Members, Want int
	After         time.Duration
}

func (e *TimeoutError) Error() string {
	s := "s"
	if e.Members == 1 {
		s = ""
	}
	return fmt.Sprintf("timed out after %v in room %q: %d other member%s, want %d", e.After, e.Room, e.Members, s, e.Want)
}

// WaitMembers waits until rm has at least want members besides this peer
// that this peer's messages reach: directly connected ones (on h) at once,
// others RelaySettle after they became members; members already there when
// the wait starts count as members since present (zero: since now). It
// re-reads the member list after each room event (the list is updated
// before the event is delivered), so it returns as soon as the member that
// completes the count is there. It returns ctx's error if ctx ends first,
// a *TimeoutError after timeout, and an error wrapping ErrRoomClosed if
// the room closes.
func WaitMembers(ctx context.Context, h host.Host, rm *room.Room, want int, timeout time.Duration, present time.Time) error {
	w := rm.Watch() // before the first count: no join can slip between
	defer w.Close()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	self := rm.Self().Peer
	seen := map[room.PeerID]time.Time{}
	first := true
	for {
		now := time.Now()
		if present.IsZero() {
			present = now
		}
		reached, members := 0, 0
		var next time.Time
		for _, m := range rm.Members() {
			if m.Peer == self {
				continue
			}
			members++
			at, ok := seen[m.Peer]
			if !ok {
				at = now
				if first {
					at = present
				}
				seen[m.Peer] = at
			}
			ready := at.Add(RelaySettle)
			if h.Network().Connectedness(peer.ID(m.Peer)) == network.Connected || !now.Before(ready) {
				reached++
			} else if next.IsZero() || ready.Before(next) {
				next = ready
			}
		}
		first = false
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
			return &TimeoutError{Room: rm.ID(), Members: members, Want: want, After: timeout}
		case errors.Is(err, context.DeadlineExceeded):
			continue // a relayed member has settled: count again
		case err != nil || ev.Type == room.RoomDestroyed:
			return fmt.Errorf("%w: %q", ErrRoomClosed, rm.ID())
		}
	}
}

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
