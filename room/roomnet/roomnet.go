// Package roomnet is the seam between a room and its network: the messages
// a room publishes and receives, the events a network hands to it, and the
// Network interface the gossip package implements over GossipSub. An app
// does not need it; a network implementer (or a test fake) does.
package roomnet

import (
	"context"
	"errors"

	"github.com/convene-p2p/convene/ephemeral"
)

// PeerID is a peer's verified identity: the bytes of its libp2p peer ID,
// held as a string so that this package needs no libp2p import. It is the
// same type as room.PeerID.
type PeerID = ephemeral.PeerID

// MessageKind says what a room message is.
type MessageKind uint8

const (
	// KindHello announces a member that has just joined: identity, epoch,
	// its full own state, and a digest of the members it knows (View).
	// Members whose own digest differs answer with an early heartbeat.
	KindHello MessageKind = iota + 1
	// KindHeartbeat is the periodic liveness message: identity, epoch and the
	// full own state, so a lost delta heals within one heartbeat interval.
	KindHeartbeat
	// KindDelta carries an ephemeral delta of the author's own keys.
	KindDelta
	// KindLeave is the signed goodbye: receivers drop the member at once.
	KindLeave
	// KindBroadcast is a fire-and-forget application payload.
	KindBroadcast
	// KindSuspect says that the author's direct liveness probe of a member
	// (Subject, incarnation SubjectEpoch) failed after its connection
	// closed. Members that are not connected to the subject drop it unless
	// they hear from it within a short refutation window; the subject
	// itself refutes by publishing a heartbeat at once.
	KindSuspect
)

// String returns the kind's lower-case name.
func (k MessageKind) String() string {
	switch k {
	case KindHello:
		return "hello"
	case KindHeartbeat:
		return "heartbeat"
	case KindDelta:
		return "delta"
	case KindLeave:
		return "leave"
	case KindBroadcast:
		return "broadcast"
	case KindSuspect:
		return "suspect"
	}
	return "unknown"
}

// Message is one room message, before encoding by the network layer.
// Which fields are meaningful depends on Kind:
//
//	hello:            Epoch, Name, Meta, State (an ephemeral snapshot of the author's own state), View
//	heartbeat:        Epoch, Name, Meta, State, Refute
//	delta:            Epoch, State (an ephemeral delta)
//	leave:            Epoch
//	broadcast:        Epoch, Payload
//	suspect:          Epoch, Subject, SubjectEpoch
type Message struct {
	Kind    MessageKind
	Epoch   uint64
	Name    string
	Meta    map[string]string
	State   []byte
	Payload []byte
	// Subject and SubjectEpoch name the member a suspect is about.
	Subject      PeerID
	SubjectEpoch uint64
	// View is a hello's digest of the member set its author knows, itself
	// included (ViewDigest); 0 means not given.
	View uint64
	// Refute marks a heartbeat that answers a suspect about its author
	// (the refutation): receivers void suspects about that incarnation
	// for a while after it, whatever order they arrive in.
	Refute bool
}

// ViewDigest is the digest of a member set that a hello carries in View:
// the XOR of a 64-bit hash (FNV-1a, then a SplitMix64 finaliser) of each
// member's peer ID bytes, so it can be kept up to date as members come and
// go. It is 0 for no members; a digest that happens to be 0 is sent as
// "not given".
func ViewDigest(peers ...PeerID) uint64 {
	var d uint64
	for _, p := range peers {
		d ^= PeerHash(p)
	}
	return d
}

// PeerHash is one peer's term of ViewDigest: ViewDigest(p) for one peer,
// so that a digest can be updated by XOR as members come and go.
func PeerHash(p PeerID) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(p); i++ {
		h ^= uint64(p[i])
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// EventKind says what an Event carries.
type EventKind uint8

const (
	// EventMessage is a message received on the room topic (or the reply to
	// a Fetch), with its verified author in From.
	EventMessage EventKind = iota + 1
	// EventPeerUp is a transport hint: From subscribed to the room topic and
	// we can send to it. It is not membership.
	EventPeerUp
	// EventPeerDown is a transport hint: From unsubscribed or its connection
	// to us closed. It is not membership: From may still be reachable.
	EventPeerDown
	// EventFetch is another peer's Fetch request (From asks for this
	// room's state): the room answers it on Reply.
	EventFetch
)

// Event is what the network hands to the room (Network.TryNext): an
// inbound message, a transport hint, or a Fetch request to answer.
type Event struct {
	Kind EventKind
	From PeerID
	Msg  Message // only for EventMessage
	// Reply is where the room answers an EventFetch, once: the network
	// gives it a buffer of one, and the room never waits on it (a send
	// that would block is dropped). A room that is not Joined refuses
	// (FetchAnswer.OK false).
	Reply chan<- FetchAnswer
	// Signed is the message exactly as its author signed it, opaque to the
	// room (nil if the network cannot relay it). The room keeps its
	// members' latest signed hellos, heartbeats and deltas and relays them
	// in its Fetch replies (Served.Relayed), so that a newcomer verifies
	// every member's state against the member's own signature instead of
	// trusting the member it fetched from.
	Signed []byte
}

// Served is a room's answer to another peer's Fetch.
type Served struct {
	// State is the local peer's own state (a KindHeartbeat message).
	State Message
	// Relayed holds other members' signed messages (Event.Signed) that
	// together carry their current identity and state: per member, its
	// latest hello or heartbeat, then the later messages that hold its
	// newest value of some key. The network may send only a prefix of it
	// (a size bound).
	Relayed [][]byte
}

// FetchAnswer is a room's answer to an EventFetch: what it serves, or OK
// false to refuse.
type FetchAnswer struct {
	Served Served
	OK     bool
}

// FetchReply is what Fetch returns.
type FetchReply struct {
	// State is the fetched peer's own state (KindHeartbeat or KindHello),
	// authenticated by the direct stream.
	State Message
	// Relayed are the other members' messages the peer relayed, each one
	// verified by the network exactly like a topic message authored by
	// its From (signature, topic, decoding, limits); invalid ones are
	// dropped. A relayed message proves what its author said, not that
	// it is still alive.
	Relayed []Event
}

// Checker is an optional extension of Network, for a network whose relays
// check what a room publishes (the gossip package's topic is one). New uses
// it so that one set of limits holds end to end: a zero Config.Limits
// takes the network's Limits, a Config.Limits that differs from them is an
// error, and limits whose full state (a hello or heartbeat) the network
// could not carry are an error. So a local write the store accepts is never
// one that every relay then rejects.
type Checker interface {
	// Limits are the presence limits the network's validators apply at
	// every relay, with defaults filled in.
	Limits() ephemeral.Limits
	// CheckFull returns an error if a hello or heartbeat of peer, with
	// this name and meta (its room Identity), carrying
	// the largest state Limits allow would be refused by the network.
	CheckFull(peer PeerID, name string, meta map[string]string) error
}

// ErrNetworkClosed is returned by a Network after Close.
var ErrNetworkClosed = errors.New("room: network closed")

// Network is what a room needs from the network: one room topic.
// The gossip package implements it over GossipSub; room tests may use
// fakes. Implementations must be safe for concurrent use.
type Network interface {
	// Publish sends m to every member of the room, signed by the local peer.
	// It returns once the message is handed to the transport. Publish of a
	// leave (KindLeave) returns after every directly connected room peer
	// acknowledged it, or ctx ends (the gossip implementation also gives up
	// after 2 s), so that a Close right after it cannot lose the goodbye
	// for those peers. A receiver may get a goodbye twice.
	Publish(ctx context.Context, m Message) error
	// Ready returns a channel that receives a value when events may be
	// queued (and after Close). Only the room reads it.
	Ready() <-chan struct{}
	// TryNext returns the next inbound event without blocking; ok is false
	// if none is queued. If it returns an event and more are queued, Ready
	// receives a value again. Messages are already validated: decodable,
	// within limits, authored by From, within the author's rate limit. Own
	// messages are not returned. An EventPeerUp/EventPeerDown of a peer is
	// returned after that peer's messages that were received before it (a
	// PeerDown never overtakes the peer's goodbye); messages that arrive
	// later may follow it. After Close it returns ErrNetworkClosed.
	//
	// Polling is the only way events reach a room: the room takes them on
	// its own loop, up to a batch per wake-up, with no reader goroutine and
	// channel in between.
	TryNext() (ev Event, ok bool, err error)
	// Fetch asks peer, over a direct authenticated stream, for its own
	// current state in this room (a KindHeartbeat message) and the other
	// members' signed messages it relays. It fails if the peer cannot be
	// reached or is not in the room.
	//
	// Other peers' Fetch requests reach the room as events (EventFetch,
	// returned by TryNext ahead of everything else and never dropped by
	// a bound on queued messages), which the room answers on its loop;
	// the network refuses a request that the room does not answer in
	// time, or that arrives once the network is closed.
	Fetch(ctx context.Context, peer PeerID) (FetchReply, error)
	// Close leaves the topic and releases everything; it is idempotent.
	Close() error
}
