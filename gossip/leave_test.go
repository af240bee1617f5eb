package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/convene-p2p/convene/room/roomnet"
)

// queued peeks at t's queue: the number of queued messages and the pending
// peer events.
func queued(t *Topic) (msgs int, peers map[peer.ID]roomnet.EventKind) {
	t.q.mu.Lock()
	defer t.q.mu.Unlock()
	peers = make(map[peer.ID]roomnet.EventKind)
	for p, pe := range t.q.pending {
		peers[p] = pe.kind
	}
	return t.q.n, peers
}

// A goodbye published right before the leaver closes its Topic, its Router
// and its host is received as a leave message by every directly connected
// peer, before that peer's PeerDown, every time.
func TestGoodbyeSurvivesImmediateClose(t *testing.T) {
	const rounds = 20
	a, c := newNode(t, Config{}), newNode(t, Config{})
	ma, mc := join(t, a, "lobby"), join(t, c, "lobby")
	connect(t, a.h, c.h)
	ctx := context.Background()
	for i := range rounds {
		b := newNode(t, Config{})
		tb, err := b.r.Join("lobby")
		if err != nil {
			t.Fatal(err)
		}
		connect(t, b.h, a.h)
		connect(t, b.h, c.h)
		ma.waitPeerUp(t, 5*time.Second, b.id())
		mc.waitPeerUp(t, 5*time.Second, b.id())
		eventually(t, 5*time.Second, "b reaches a and c", func() bool { return len(tb.Peers()) == 2 })

		epoch := uint64(i + 1)
		if err := tb.Publish(ctx, roomnet.Message{Kind: roomnet.KindLeave, Epoch: epoch}); err != nil {
			t.Fatalf("round %d: Publish(leave): %v", i, err)
		}
		acked := tb.Stats().LeaveAcked
		_ = tb.Close()
		_ = b.r.Close()
		_ = b.h.Close()
		if acked != 2 {
			t.Fatalf("round %d: Publish(leave) returned with %d acknowledgements, want 2", i, acked)
		}
		for _, m := range []*member{ma, mc} {
			ev := m.waitFor(t, 5*time.Second, fmt.Sprintf("round %d: b's goodbye", i), func(ev roomnet.Event) bool {
				return peer.ID(ev.From) == b.id() && (ev.Kind == roomnet.EventPeerDown ||
					ev.Kind == roomnet.EventMessage && ev.Msg.Kind == roomnet.KindLeave)
			})
			if ev.Kind != roomnet.EventMessage || ev.Msg.Epoch != epoch {
				t.Fatalf("round %d: %s got %s from b before its goodbye", i, m.n.id(), eventString(ev))
			}
		}
	}
	for _, m := range []*member{ma, mc} {
		if st := m.t.Stats(); st.LeaveReceived != rounds || st.LeaveInvalid != 0 {
			t.Errorf("%s: LeaveReceived %d, LeaveInvalid %d; want %d, 0", m.n.id(), st.LeaveReceived, st.LeaveInvalid, rounds)
		}
	}
}

// With a real peer: messages of a peer already queued when its PeerDown
// arrives are returned before the PeerDown.
func TestPeerDownAfterThatPeersQueuedMessages(t *testing.T) {
	const n = 5
	a, b := newNode(t, Config{}), newNode(t, Config{})
	ta, err := a.r.Join("lobby") // not read until the end
	if err != nil {
		t.Fatal(err)
	}
	defer ta.Close()
	mb := join(t, b, "lobby")
	connect(t, a.h, b.h)
	eventually(t, 5*time.Second, "a and b subscribed", func() bool {
		return len(ta.Peers()) == 1 && len(mb.t.Peers()) == 1
	})
	for i := range n {
		if err := mb.t.Publish(context.Background(), roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: fmt.Appendf(nil, "m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "b's messages queued at a", func() bool { m, _ := queued(ta); return m == n })
	mb.close() // b unsubscribes
	eventually(t, 5*time.Second, "b's PeerDown queued at a", func() bool {
		_, p := queued(ta)
		return p[b.id()] == roomnet.EventPeerDown
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	seen := 0
	for {
		ev, err := ta.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == roomnet.EventMessage {
			seen++
		}
		if ev.Kind == roomnet.EventPeerDown {
			if seen != n {
				t.Fatalf("PeerDown of b returned after %d of its %d queued messages", seen, n)
			}
			return
		}
	}
}

// sendRawLeave opens a goodbye stream from h to p, sends req and returns
// the reply status (or the stream error).
func sendRawLeave(t *testing.T, h host.Host, p peer.ID, req []byte) (byte, error) {
	t.Helper()
	return sendRawLeaveOver(t, h, p, LeaveProtocolV1, req)
}

// sendRawLeaveOver is sendRawLeave over protocol proto.
func sendRawLeaveOver(t *testing.T, h host.Host, p peer.ID, proto protocol.ID, req []byte) (byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := h.NewStream(ctx, p, proto)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := s.Write(req); err != nil {
		return 0, err
	}
	if err := s.CloseWrite(); err != nil {
		return 0, err
	}
	b, err := io.ReadAll(s)
	if err != nil {
		return 0, err
	}
	return decodeLeaveReply(b)
}

// A goodbye received directly is attributed to the stream's authenticated
// remote peer, validated like a topic message by that author, and must be
// a leave; anything else is rejected, counted and never reaches Next.
func TestLeaveStreamRejectsForgedGoodbye(t *testing.T) {
	a := newNode(t, Config{MaxMessageSize: 4096})
	ma := join(t, a, "lobby")
	evil := newHost(t)
	connect(t, evil, a.h)
	victim := randomPeerID(t)
	envelope := func(m roomnet.Message) []byte {
		b, err := EncodeMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name       string
		req        []byte
		want       byte // status; 0xff: the stream is reset
		roomCount  bool // counted in the room's LeaveInvalid (else the router's)
		notCounted bool
	}{
		{"someone else's state", encodeLeaveRequest("lobby", envelope(roomnet.Message{Kind: roomnet.KindLeave, Epoch: 1, State: presence(t, victim, "k", "v")})), leaveInvalid, true, false},
		{"not a leave", encodeLeaveRequest("lobby", envelope(roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: 1, State: presence(t, evil.ID(), "k", "v")})), leaveInvalid, true, false},
		{"undecodable envelope", encodeLeaveRequest("lobby", []byte{0xff, 0x01}), leaveInvalid, true, false},
		{"oversized envelope", encodeLeaveRequest("lobby", envelope(roomnet.Message{Kind: roomnet.KindLeave, Epoch: 1, Payload: make([]byte, 5000)})), 0xff, false, false},
		{"garbage request", []byte{0x00}, 0xff, false, false},
		{"trailing bytes", append(encodeLeaveRequest("lobby", envelope(roomnet.Message{Kind: roomnet.KindLeave, Epoch: 1})), 0), 0xff, false, false},
		{"room not joined", encodeLeaveRequest("other", envelope(roomnet.Message{Kind: roomnet.KindLeave, Epoch: 1})), leaveNotInRoom, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			roomBefore, routerBefore := ma.t.Stats().LeaveInvalid, a.r.Stats().LeaveInvalid
			status, err := sendRawLeave(t, evil, a.id(), tc.req)
			switch {
			case tc.want == 0xff && err == nil:
				t.Fatalf("status %d, want the stream reset", status)
			case tc.want != 0xff && (err != nil || status != tc.want):
				t.Fatalf("status %d, err %v; want status %d", status, err, tc.want)
			}
			roomGrew, routerGrew := ma.t.Stats().LeaveInvalid-roomBefore, a.r.Stats().LeaveInvalid-routerBefore
			want := uint64(1)
			if tc.notCounted {
				want = 0
			}
			if routerGrew != want {
				t.Fatalf("router LeaveInvalid grew by %d, want %d", routerGrew, want)
			}
			if wantRoom := map[bool]uint64{true: want}[tc.roomCount]; roomGrew != wantRoom {
				t.Fatalf("room LeaveInvalid grew by %d, want %d", roomGrew, wantRoom)
			}
		})
	}

	// A valid goodbye is the first event Next returns: none of the above
	// was queued, and it is attributed to evil, whatever it carries.
	status, err := sendRawLeave(t, evil, a.id(), encodeLeaveRequest("lobby", envelope(roomnet.Message{Kind: roomnet.KindLeave, Epoch: 7})))
	if err != nil || status != leaveOK {
		t.Fatalf("valid goodbye: status %d, err %v", status, err)
	}
	select {
	case ev := <-ma.events:
		if ev.Kind != roomnet.EventMessage || ev.Msg.Kind != roomnet.KindLeave || ev.Msg.Epoch != 7 || peer.ID(ev.From) != evil.ID() {
			t.Fatalf("first event %s (%+v), want evil's goodbye of epoch 7", eventString(ev), ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the valid goodbye never reached Next")
	}
	if st := ma.t.Stats(); st.LeaveReceived != 1 || st.LeaveInvalid != 3 || st.Accepted != 0 {
		t.Fatalf("room stats %+v, want 1 goodbye received, 3 invalid", st)
	}
}

// Publish of a goodbye waits for acknowledgements at most until its context
// ends, and Topic.Close aborts the wait.
func TestGoodbyeDeliveryBoundedByContextAndClose(t *testing.T) {
	a, s := newNode(t, Config{}), newNode(t, Config{})
	ma, ms := join(t, a, "lobby"), join(t, s, "lobby")
	release := make(chan struct{})
	defer close(release)
	s.h.SetStreamHandler(LeaveProtocol, func(st network.Stream) { // never answers
		<-release
		_ = st.Reset()
	})
	connect(t, a.h, s.h)
	eventually(t, 5*time.Second, "a reaches s", func() bool { return len(ma.t.Peers()) == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := ma.t.Publish(ctx, roomnet.Message{Kind: roomnet.KindLeave, Epoch: 1}); err != nil {
		t.Fatalf("Publish(leave) to a silent peer: %v", err)
	}
	// Bounded by ctx (200ms), not by leaveTimeout (2s).
	if d := time.Since(start); d < 200*time.Millisecond || d >= leaveTimeout {
		t.Fatalf("Publish(leave) with a 200ms context returned after %v", d)
	}
	if st := ma.t.Stats(); st.LeaveAcked != 0 || st.Published != 1 {
		t.Fatalf("stats %+v, want 1 published, 0 acknowledged", st)
	}
	// The GossipSub copy still arrived.
	ms.waitFor(t, 5*time.Second, "the goodbye over GossipSub", func(ev roomnet.Event) bool {
		return ev.Kind == roomnet.EventMessage && ev.Msg.Kind == roomnet.KindLeave && peer.ID(ev.From) == a.id()
	})

	done := make(chan error, 1)
	go func() { done <- ma.t.Publish(context.Background(), roomnet.Message{Kind: roomnet.KindLeave, Epoch: 2}) }()
	eventually(t, 5*time.Second, "the goodbye stream open", func() bool {
		for _, c := range a.h.Network().ConnsToPeer(s.id()) {
			for _, st := range c.GetStreams() {
				if st.Protocol() == LeaveProtocol {
					return true
				}
			}
		}
		return false
	})
	start = time.Now()
	ma.close()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, roomnet.ErrNetworkClosed) {
			t.Fatalf("Publish(leave) during Close = %v", err)
		}
		// Aborted by Close, not ended by leaveTimeout (2s).
		if d := time.Since(start); d >= leaveTimeout {
			t.Fatalf("Publish(leave) returned %v after Close", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not abort the goodbye delivery")
	}
}

func TestLeaveFramingRoundTrip(t *testing.T) {
	env, err := EncodeMessage(roomnet.Message{Kind: roomnet.KindLeave, Epoch: 1_767_225_600_000})
	if err != nil {
		t.Fatal(err)
	}
	req := encodeLeaveRequest("lobby", env)
	id, got, err := decodeLeaveRequest(req, 64)
	if err != nil || id != "lobby" || !bytes.Equal(got, env) {
		t.Fatalf("decode = %q, %x, %v", id, got, err)
	}
	if len(req) > maxLeaveRequest(64) {
		t.Fatalf("request of %d bytes above maxLeaveRequest", len(req))
	}
	long := encodeLeaveRequest(string(bytes.Repeat([]byte("r"), MaxRoomIDLen)), make([]byte, 1000))
	if len(long) != maxLeaveRequest(1000) {
		t.Fatalf("largest request %d bytes, maxLeaveRequest %d", len(long), maxLeaveRequest(1000))
	}
	bad := map[string][]byte{
		"empty":          nil,
		"empty room":     {0x00, 0x01, 0x01},
		"bad room":       encodeLeaveRequest("a/b", env),
		"no envelope":    encodeLeaveRequest("lobby", nil),
		"too large":      encodeLeaveRequest("lobby", make([]byte, 65)),
		"truncated":      req[:len(req)-1],
		"trailing bytes": append(req[:len(req):len(req)], 0),
	}
	for name, b := range bad {
		if _, _, err := decodeLeaveRequest(b, 64); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: decode = %v", name, err)
		}
	}
	for _, s := range []byte{leaveOK, leaveNotInRoom, leaveInvalid, leaveBusy} {
		if got, err := decodeLeaveReply([]byte{s}); err != nil || got != s {
			t.Errorf("reply %d: %d, %v", s, got, err)
		}
	}
	for _, b := range [][]byte{nil, {9}, {0, 0}} {
		if _, err := decodeLeaveReply(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("reply %x: %v", b, err)
		}
	}
}

func FuzzDecodeLeaveRequest(f *testing.F) {
	env, _ := EncodeMessage(roomnet.Message{Kind: roomnet.KindLeave, Epoch: 42})
	f.Add(encodeLeaveRequest("lobby", env))
	f.Add([]byte{0x01, 'x', 0x01, 0x04})
	f.Add([]byte{0x80, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, envelope, err := decodeLeaveRequest(b, 1024)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeLeaveRequest(id, envelope), b) {
			t.Fatalf("%x does not re-encode to itself", b)
		}
	})
}
