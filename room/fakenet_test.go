package room

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/convene-p2p/convene/room/roomnet"
)

// An in-memory network for the shell tests: a bus that connects every
// joined fakeNet with every other one, unless a link is cut. Publishing
// delivers to every linked peer at once (or to none, with dropPublish);
// Fetch queues an EventFetch at the target, as the gossip package does,
// and waits for the target room's answer. A published hello,
// heartbeat or delta carries an opaque "signed" token that the bus maps
// back to the message and its author, so relayed messages in a fetch
// reply arrive as the author's (the bus is the fake's signature check).

var _ roomnet.Network = (*fakeNet)(nil)

type bus struct {
	mu          sync.Mutex
	nets        map[PeerID]*fakeNet
	cut         map[[2]PeerID]bool
	dropPublish bool // lose every publish (only Fetch gets through)
	signed      map[string]roomnet.Event
}

func newBus() *bus {
	return &bus{nets: make(map[PeerID]*fakeNet), cut: make(map[[2]PeerID]bool), signed: make(map[string]roomnet.Event)}
}

func link(a, b PeerID) [2]PeerID {
	if a > b {
		a, b = b, a
	}
	return [2]PeerID{a, b}
}

// join attaches a new network for self; it and every linked peer see each
// other come up.
func (b *bus) join(self PeerID) *fakeNet {
	n := &fakeNet{bus: b, self: self, wake: make(chan struct{}, 1), done: make(chan struct{})}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, o := range b.nets {
		if !b.cut[link(self, o.self)] {
			o.push(roomnet.Event{Kind: roomnet.EventPeerUp, From: self})
			n.push(roomnet.Event{Kind: roomnet.EventPeerUp, From: o.self})
		}
	}
	b.nets[self] = n
	return n
}

// setCut cuts or heals the link between a and b; both see the peer go
// down or come up.
func (b *bus) setCut(a, c PeerID, cut bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut[link(a, c)] == cut {
		return
	}
	b.cut[link(a, c)] = cut
	kind := roomnet.EventPeerUp
	if cut {
		kind = roomnet.EventPeerDown
	}
	if na, nc := b.nets[a], b.nets[c]; na != nil && nc != nil {
		na.push(roomnet.Event{Kind: kind, From: c})
		nc.push(roomnet.Event{Kind: kind, From: a})
	}
}

func (b *bus) setDropPublish(drop bool) {
	b.mu.Lock()
	b.dropPublish = drop
	b.mu.Unlock()
}

type fakeNet struct {
	bus  *bus
	self PeerID
	wake chan struct{}
	done chan struct{} // closed by Close

	mu        sync.Mutex
	q         []roomnet.Event
	closed    bool
	published []roomnet.Message
}

func (n *fakeNet) push(ev roomnet.Event) {
	n.mu.Lock()
	if !n.closed {
		n.q = append(n.q, ev)
	}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *fakeNet) Publish(ctx context.Context, m roomnet.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return roomnet.ErrNetworkClosed
	}
	n.published = append(n.published, m)
	n.mu.Unlock()
	b := n.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	ev := roomnet.Event{Kind: roomnet.EventMessage, From: n.self, Msg: m}
	switch m.Kind {
	case roomnet.KindHello, roomnet.KindHeartbeat, roomnet.KindDelta:
		ev.Signed = fmt.Appendf(nil, "signed-%d", len(b.signed))
		b.signed[string(ev.Signed)] = ev
	}
	if b.dropPublish {
		return nil
	}
	for _, o := range b.nets {
		if o != n && !b.cut[link(n.self, o.self)] {
			o.push(ev)
		}
	}
	return nil
}

func (n *fakeNet) Ready() <-chan struct{} { return n.wake }

func (n *fakeNet) TryNext() (roomnet.Event, bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return roomnet.Event{}, false, roomnet.ErrNetworkClosed
	}
	if len(n.q) == 0 {
		return roomnet.Event{}, false, nil
	}
	ev := n.q[0]
	n.q = n.q[1:]
	if len(n.q) > 0 {
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
	return ev, true, nil
}

var errUnreachable = errors.New("fakenet: peer unreachable")

func (n *fakeNet) Fetch(ctx context.Context, p PeerID) (roomnet.FetchReply, error) {
	if err := ctx.Err(); err != nil {
		return roomnet.FetchReply{}, err
	}
	b := n.bus
	b.mu.Lock()
	o := b.nets[p]
	cut := b.cut[link(n.self, p)]
	b.mu.Unlock()
	if o == nil || cut || n.isClosed() {
		return roomnet.FetchReply{}, errUnreachable
	}
	answer := make(chan roomnet.FetchAnswer, 1)
	o.push(roomnet.Event{Kind: roomnet.EventFetch, From: n.self, Reply: answer})
	var a roomnet.FetchAnswer
	select {
	case a = <-answer:
	case <-o.done:
		return roomnet.FetchReply{}, errUnreachable
	case <-ctx.Done():
		return roomnet.FetchReply{}, ctx.Err()
	}
	if !a.OK {
		return roomnet.FetchReply{}, errors.New("fakenet: refused")
	}
	s := a.Served
	reply := roomnet.FetchReply{State: s.State}
	b.mu.Lock()
	for _, tok := range s.Relayed {
		if ev, ok := b.signed[string(tok)]; ok && ev.From != n.self && ev.From != p {
			reply.Relayed = append(reply.Relayed, ev)
		}
	}
	b.mu.Unlock()
	return reply, nil
}

func (n *fakeNet) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// Close leaves the bus: every linked peer sees this one go down.
func (n *fakeNet) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.q = nil
	close(n.done)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
	b := n.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.nets[n.self] == n {
		delete(b.nets, n.self)
		for _, o := range b.nets {
			if !b.cut[link(n.self, o.self)] {
				o.push(roomnet.Event{Kind: roomnet.EventPeerDown, From: n.self})
			}
		}
	}
	return nil
}

// sent returns the kinds of the messages published so far.
func (n *fakeNet) sent() []roomnet.MessageKind {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []roomnet.MessageKind
	for _, m := range n.published {
		out = append(out, m.Kind)
	}
	return out
}
