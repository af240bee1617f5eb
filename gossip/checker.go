package gossip

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/convene-p2p/convene/ephemeral"

	"github.com/convene-p2p/convene/room/roomnet"
)

var _ roomnet.Checker = (*Topic)(nil)

// Limits are the presence limits this topic's validator applies at every
// relay (Config.Limits with ephemeral's defaults filled in). A room over
// this topic takes its limits from here (roomnet.Checker), so that a write the
// room accepts is one every relay accepts.
func (t *Topic) Limits() ephemeral.Limits {
	lim, _ := t.r.cfg.Limits.WithDefaults() // validate rejected negative fields
	return lim
}

// CheckFull returns an error wrapping ErrTooLarge if a hello of self (with
// this name and meta)
// carrying the largest presence state that Limits allow would be over
// Config.MaxMessageSize: the room would accept writes whose heartbeat every
// relay then rejects. It also rejects an identity that does not encode
// (name or meta beyond the envelope's bounds).
func (t *Topic) CheckFull(self roomnet.PeerID, name string, meta map[string]string) error {
	lim := t.Limits()
	state, err := ephemeral.MaxSnapshotSize(len(self), lim)
	if err != nil {
		return err
	}
	hello, err := EncodeMessage(roomnet.Message{Kind: roomnet.KindHello, Epoch: math.MaxUint64, Name: name, Meta: meta, View: math.MaxUint64})
	if err != nil {
		return fmt.Errorf("gossip: identity: %w", err)
	}
	size := len(hello) + binary.MaxVarintLen64 + state
	if size > t.r.cfg.MaxMessageSize {
		return fmt.Errorf("%w: a heartbeat with the largest presence state the limits allow (%d keys of up to %d bytes with values of up to %d bytes) and this identity is up to %d bytes, over the network's MaxMessageSize %d; lower the limits or raise MaxMessageSize",
			ErrTooLarge, lim.MaxKeysPerPeer, lim.MaxKeyLen, lim.MaxValueSize, size, t.r.cfg.MaxMessageSize)
	}
	return nil
}
