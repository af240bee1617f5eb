package room

import (
	"errors"

	"github.com/convene-p2p/convene/ephemeral"
)

var (
	// ErrClosed is returned by every operation on a room that has been
	// destroyed (Close, or the end of the linger after Leave), and by
	// Watcher.Next once the room is destroyed and the buffer drained.
	ErrClosed = errors.New("room: closed")
	// ErrNotJoined is returned by operations that need the local peer to be
	// a member (Set, Delete, Broadcast, Leave) while the room lingers after
	// Leave.
	ErrNotJoined = errors.New("room: not joined")
)

// Status is a room's local lifecycle state.
type Status uint8

const (
	// Joined: the local peer is a member; heartbeats run.
	Joined Status = iota + 1
	// Left: the local peer said goodbye; the room lingers (still receiving)
	// until Config.Linger passes or Rejoin is called.
	Left
	// Closed: the room is destroyed; Done is closed.
	Closed
)

// String returns "joined", "left" or "closed".
func (s Status) String() string {
	switch s {
	case Joined:
		return "joined"
	case Left:
		return "left"
	case Closed:
		return "closed"
	}
	return "unknown"
}

// EventType says what an Event reports.
type EventType uint8

const (
	// MemberJoined: a peer became a member (Member). Also emitted for the
	// local peer on Rejoin.
	//
	// Member.Name and Meta are empty (a member whose Name is empty by
	// choice aside) exactly when the first message heard from that
	// incarnation was a delta: hellos, heartbeats and fetch replies carry
	// the identity, deltas do not (for example, the member's hello and the
	// join-snapshot fetch were lost and one of its cursor moves arrived
	// first). The room then fetches the identity from the member at once,
	// and MemberUpdated carries it after that round trip, at the latest
	// with the member's next heartbeat (HeartbeatInterval). Show such a
	// member by its peer ID (Member.Peer.String()) until then.
	MemberJoined EventType = iota + 1
	// MemberLeft: a member is gone (Member, Reason). Also emitted for the
	// local peer on Leave.
	MemberLeft
	// MemberUpdated: a member's Name or Meta changed (Member has the new
	// identity).
	MemberUpdated
	// PresenceChanged: a peer's presence changed (Change).
	PresenceChanged
	// Broadcast: an application message (Member is the sender, Payload).
	Broadcast
	// Lagged: this watcher fell behind and Dropped events were discarded
	// at this point of the stream. Re-read state (Members, States).
	Lagged
	// RoomDestroyed: the room is gone; it is the last event of every
	// watcher.
	RoomDestroyed
)

// String returns the event type's kebab-case name, e.g. "member-joined".
func (t EventType) String() string {
	switch t {
	case MemberJoined:
		return "member-joined"
	case MemberLeft:
		return "member-left"
	case MemberUpdated:
		return "member-updated"
	case PresenceChanged:
		return "presence-changed"
	case Broadcast:
		return "broadcast"
	case Lagged:
		return "lagged"
	case RoomDestroyed:
		return "room-destroyed"
	}
	return "unknown"
}

// LeaveReason says why a member left.
type LeaveReason uint8

const (
	// ReasonLeft: the member said goodbye.
	ReasonLeft LeaveReason = iota + 1
	// ReasonTimeout: the member went silent for Timeout, or its connection
	// closed and a direct probe failed.
	ReasonTimeout
)

// String returns "left" or "timeout".
func (r LeaveReason) String() string {
	switch r {
	case ReasonLeft:
		return "left"
	case ReasonTimeout:
		return "timeout"
	}
	return "unknown"
}

// Event is one room event. Which fields are set depends on Type. Events
// are shared between watchers: treat their maps and slices as read-only.
type Event struct {
	Type    EventType
	Room    string
	Member  Identity         // MemberJoined/Left/Updated; Broadcast sender
	Reason  LeaveReason      // MemberLeft
	Change  ephemeral.Change // PresenceChanged
	Payload []byte           // Broadcast
	Dropped int              // Lagged: how many events this watcher missed here
}
