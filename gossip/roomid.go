package gossip

import (
	"errors"
	"fmt"
	"strings"

	"github.com/convene-p2p/convene/room"
)

// MaxRoomIDLen bounds a room ID, in bytes (room.MaxIDLen).
const MaxRoomIDLen = room.MaxIDLen

// TopicPrefix is the GossipSub topic name of a room without its ID: room
// "lobby" is the topic "/convene/room/1/lobby". The "1" is the wire version.
const TopicPrefix = "/convene/room/1/"

// ErrInvalidRoomID is returned by Join for a room ID that room.ValidateID
// refuses (the error also wraps room.ErrInvalidID).
var ErrInvalidRoomID = errors.New("gossip: invalid room ID")

// TopicName returns the GossipSub topic name of a room.
func TopicName(roomID string) string { return TopicPrefix + roomID }

// checkRoomID reports why id is not a valid room ID (room.ValidateID's
// rules), wrapping ErrInvalidRoomID, or nil.
func checkRoomID(id string) error {
	if err := room.ValidateID(id); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRoomID, err)
	}
	return nil
}

// roomIDFromTopic returns the room ID of a valid room topic name.
func roomIDFromTopic(topic string) (string, bool) {
	id, ok := strings.CutPrefix(topic, TopicPrefix)
	if !ok || checkRoomID(id) != nil {
		return "", false
	}
	return id, true
}
