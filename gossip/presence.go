package gossip

import (
	"fmt"

	"github.com/convene-p2p/convene/room/roomnet"
)

// Presence formats inside an envelope (docs/PROTOCOL.md Part 3): the
// version byte, then the kind byte.
const (
	presenceVersion  = 0x01
	presenceDelta    = 0x01
	presenceSnapshot = 0x02
)

// checkPresence applies the rules that tie an envelope to the presence
// state it carries (docs/PROTOCOL.md 2.4, check 5), after ephemeral.Verify
// has accepted the state:
//
//   - hello, heartbeat and delta carry a state; the others carry none;
//   - hello and heartbeat carry the author's own snapshot (kind 0x02, one
//     record), a delta an ephemeral delta (kind 0x01);
//   - the state's epoch is the envelope's epoch.
//
// Without them a peer could become a member without any presence (a
// heartbeat with no state), or hold one epoch as a member and another in
// the store.
func checkPresence(m roomnet.Message) error {
	var want byte
	switch m.Kind {
	case roomnet.KindHello, roomnet.KindHeartbeat:
		want = presenceSnapshot
	case roomnet.KindDelta:
		want = presenceDelta
	default:
		if len(m.State) > 0 {
			return fmt.Errorf("%w: state on a %v", ErrMalformed, m.Kind)
		}
		return nil
	}
	if len(m.State) == 0 {
		return fmt.Errorf("%w: %v without state", ErrMalformed, m.Kind)
	}
	d := decoder{b: m.State}
	v, _ := d.byte()
	k, ok := d.byte()
	if !ok || v != presenceVersion {
		return fmt.Errorf("%w: presence state version", ErrMalformed)
	}
	if k != want {
		return fmt.Errorf("%w: a %v carries presence kind %d", ErrMalformed, m.Kind, k)
	}
	if k == presenceSnapshot {
		if n, ok := d.uvarint(); !ok || n != 1 {
			return fmt.Errorf("%w: a %v's snapshot must hold exactly its author's record", ErrMalformed, m.Kind)
		}
		pl, err := d.length(1, 128, "snapshot peer")
		if err != nil {
			return err
		}
		d.take(pl)
	}
	e, ok := d.uvarint()
	if !ok {
		return fmt.Errorf("%w: presence epoch", ErrMalformed)
	}
	if e != m.Epoch {
		return fmt.Errorf("%w: envelope epoch %d, presence epoch %d", ErrMalformed, m.Epoch, e)
	}
	return nil
}
