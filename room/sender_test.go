package room

import (
	"errors"
	"testing"

	"github.com/convene-p2p/convene/room/roomnet"
)

func TestSenderDropsOnlyHeartbeatsAndDeltas(t *testing.T) {
	s := newSender()
	leave := s.push(roomnet.Message{Kind: roomnet.KindLeave})
	first := s.push(roomnet.Message{Kind: roomnet.KindHeartbeat})
	for range maxSendQueue - 2 {
		s.push(roomnet.Message{Kind: roomnet.KindDelta})
	}
	s.push(roomnet.Message{Kind: roomnet.KindHello}) // the queue is full: the oldest heartbeat goes
	if err := <-first; !errors.Is(err, errDropped) {
		t.Errorf("oldest heartbeat: %v", err)
	}
	select {
	case err := <-leave:
		t.Errorf("the leave was dropped: %v", err)
	default:
	}
	if len(s.q) != maxSendQueue || s.q[0].msg.Kind != roomnet.KindLeave || s.q[len(s.q)-1].msg.Kind != roomnet.KindHello {
		t.Errorf("queue: %d items, first %v last %v", len(s.q), s.q[0].msg.Kind, s.q[len(s.q)-1].msg.Kind)
	}
}
