package room

import "github.com/convene-p2p/convene/ephemeral"

// PeerID is a peer's verified identity: the bytes of its libp2p peer ID,
// held as a string so that this package needs no libp2p import.
type PeerID = ephemeral.PeerID

// Identity is how a member presents itself in a room. Peer is
// cryptographically bound (the message signer); Name and Meta are
// self-asserted display data and must be treated as such.
type Identity struct {
	Peer PeerID
	Name string
	Meta map[string]string
}
