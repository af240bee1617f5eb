package repo

import (
	"context"
	"errors"

	"github.com/convene-p2p/convene/internal/watch"
	"github.com/convene-p2p/convene/room"
)

// EventType says what a Repo event reports.
type EventType uint8

const (
	// RoomCreated: a room was created locally by its first JoinRoom.
	RoomCreated EventType = iota + 1
	// RoomDestroyed: a room's linger after Leave ran out (or the Repo closed).
	RoomDestroyed
	// MemberJoined: a remote member joined one of our rooms (or was
	// already there when the room was created locally). Member.Name is
	// empty exactly when the member was first heard through a presence
	// delta, which carries no identity (see room.MemberJoined); its
	// identity follows as MemberUpdated. Label it by Member.Peer.String()
	// meanwhile.
	MemberJoined
	// MemberLeft: a member left a room, with Reason left or timeout.
	MemberLeft
	// Lagged: this watcher fell behind and Dropped events were lost (Room
	// is empty), or a room's own event stream lagged (Room is set; the
	// count is that room's). Re-read Rooms and Members.
	Lagged
	// MemberUpdated: a remote member's Name or Meta changed (for example
	// a member first known from a presence delta, whose identity arrives
	// after MemberJoined, or a peer that restarted with a new name).
	MemberUpdated
	// DocCreated: the Repo opened document Doc (the first Doc call for its
	// ID here: created new or loaded from storage).
	DocCreated
	// DocDestroyed: document Doc was deleted here (DeleteDoc).
	DocDestroyed
)

// String returns the seed's event names ("room-created", ...).
func (t EventType) String() string {
	switch t {
	case RoomCreated:
		return "room-created"
	case RoomDestroyed:
		return "room-destroyed"
	case MemberJoined:
		return "room-member-joined"
	case MemberLeft:
		return "room-member-left"
	case Lagged:
		return "lagged"
	case MemberUpdated:
		return "room-member-updated"
	case DocCreated:
		return "doc-created"
	case DocDestroyed:
		return "doc-destroyed"
	}
	return "unknown"
}

// Event is one Repo event.
type Event struct {
	Type    EventType
	Room    string
	Doc     string           // DocCreated, DocDestroyed
	Member  room.Identity    // MemberJoined, MemberLeft, MemberUpdated
	Reason  room.LeaveReason // MemberLeft
	Dropped int              // Lagged
}

// ErrWatcherClosed is returned by Watcher.Next after the Repo or the watcher
// closed and every buffered event was read.
var ErrWatcherClosed = errors.New("repo: watcher closed")

// Watcher is a forward-only stream of Repo events.
type Watcher struct{ w *watch.Watcher[Event] }

// Next blocks for the next event.
func (w *Watcher) Next(ctx context.Context) (Event, error) {
	ev, err := w.w.Next(ctx)
	if errors.Is(err, watch.ErrClosed) {
		return ev, ErrWatcherClosed
	}
	return ev, err
}

// Close stops the watcher. Idempotent.
func (w *Watcher) Close() { w.w.Close() }

// PeerString renders a room.PeerID as the usual base58 peer ID
// ("12D3KooW..."). It is p.String(), kept for callers of earlier versions.
//
// Deprecated: use p.String().
func PeerString(p room.PeerID) string { return p.String() }
