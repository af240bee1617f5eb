package room

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/convene-p2p/convene/room/roomnet"
)

// sender publishes the machine's messages in order on its own goroutine,
// so that a slow network never stalls the loop.
type sender struct {
	mu       sync.Mutex
	q        []sendItem
	wake     chan struct{}
	draining bool
	drained  chan struct{}
}

type sendItem struct {
	msg roomnet.Message
	ack chan error // nil for messages that may be dropped
}

func newSender() *sender {
	return &sender{wake: make(chan struct{}, 1), drained: make(chan struct{})}
}

// push queues msg and returns a channel that receives the publish error.
// Heartbeats and deltas may be dropped (oldest first) if the network falls
// far behind: the next heartbeat heals what they carried. Hellos and
// leaves are never dropped.
func (s *sender) push(msg roomnet.Message) <-chan error {
	it := sendItem{msg: msg, ack: make(chan error, 1)}
	s.mu.Lock()
	if len(s.q) >= maxSendQueue {
		for i, old := range s.q {
			if old.msg.Kind == roomnet.KindHeartbeat || old.msg.Kind == roomnet.KindDelta {
				old.ack <- errDropped
				s.q = append(s.q[:i], s.q[i+1:]...)
				break
			}
		}
	}
	s.q = append(s.q, it)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return it.ack
}

var errDropped = errors.New("room: publish dropped: network too slow")

func (s *sender) run(ctx context.Context, wg *sync.WaitGroup, net roomnet.Network, log *slog.Logger) {
	defer wg.Done()
	for {
		s.mu.Lock()
		if len(s.q) == 0 {
			draining := s.draining
			s.mu.Unlock()
			if draining {
				close(s.drained)
				return
			}
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		it := s.q[0]
		s.q = s.q[1:]
		s.mu.Unlock()
		err := net.Publish(ctx, it.msg)
		if err != nil && ctx.Err() == nil {
			log.Debug("room: publish failed", "kind", it.msg.Kind, "err", err)
		}
		it.ack <- err
	}
}

// drain makes the sender publish what is queued and stop, waiting at most
// d or until ctx ends (the caller then cancels the sender's context).
func (s *sender) drain(ctx context.Context, d time.Duration) {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.drained:
	case <-t.C:
	case <-ctx.Done():
	}
}
