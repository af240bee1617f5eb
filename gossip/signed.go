package gossip

import (
	"errors"
	"fmt"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"
)

// ErrBadSignature is returned (wrapped) for a relayed message whose author
// signature does not verify.
var ErrBadSignature = errors.New("gossip: bad signature")

// signedForm returns the message as its author signed and published it
// (pubsub's wire form of one Message: from, data, seqno, topic, signature,
// key), for relaying in Fetch replies. nil if it cannot be marshalled.
func signedForm(msg *pubsub.Message) []byte {
	if msg == nil || msg.Message == nil || len(msg.Signature) == 0 {
		return nil
	}
	b, err := proto.Marshal(msg.Message)
	if err != nil {
		return nil
	}
	return b
}

// openSigned decodes a relayed message and verifies it exactly as pubsub
// verifies a message under StrictSign: the signature over "libp2p-pubsub:"
// and the message without its signature and key, with the public key
// carried in the message (which must match the author's ID) or extracted
// from the author's ID. It also requires the message to be on topic. It
// returns the author and the data; it never panics.
func openSigned(b []byte, topic string) (peer.ID, []byte, error) {
	var m pb.Message
	if err := proto.Unmarshal(b, &m); err != nil {
		return "", nil, fmt.Errorf("%w: relayed message: %w", ErrMalformed, err)
	}
	if m.GetTopic() != topic {
		return "", nil, fmt.Errorf("%w: relayed message of another topic", ErrMalformed)
	}
	if len(m.Signature) == 0 || len(m.From) == 0 {
		return "", nil, fmt.Errorf("%w: relayed message unsigned", ErrBadSignature)
	}
	from, err := peer.IDFromBytes(m.From)
	if err != nil {
		return "", nil, fmt.Errorf("%w: relayed message author: %w", ErrMalformed, err)
	}
	var pk crypto.PubKey
	if m.Key == nil {
		if pk, err = from.ExtractPublicKey(); err != nil || pk == nil {
			return "", nil, fmt.Errorf("%w: no key for %s", ErrBadSignature, from)
		}
	} else {
		if pk, err = crypto.UnmarshalPublicKey(m.Key); err != nil {
			return "", nil, fmt.Errorf("%w: signing key: %w", ErrBadSignature, err)
		}
		if !from.MatchesPublicKey(pk) {
			return "", nil, fmt.Errorf("%w: signing key is not %s's", ErrBadSignature, from)
		}
	}
	sig := m.Signature
	m.Signature, m.Key = nil, nil
	unsigned, err := proto.Marshal(&m)
	if err != nil {
		return "", nil, fmt.Errorf("%w: relayed message: %w", ErrMalformed, err)
	}
	ok, err := pk.Verify(append([]byte(pubsub.SignPrefix), unsigned...), sig)
	if err != nil || !ok {
		return "", nil, fmt.Errorf("%w: relayed message from %s", ErrBadSignature, from)
	}
	return from, m.Data, nil
}
