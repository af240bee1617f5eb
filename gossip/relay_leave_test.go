package gossip

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/room/roomnet"
)

// isLeave matches a goodbye of epoch from peer.
func isLeave(from peer.ID, epoch uint64) func(roomnet.Event) bool {
	return func(ev roomnet.Event) bool {
		return ev.Kind == roomnet.EventMessage && peer.ID(ev.From) == from && ev.Msg.Kind == roomnet.KindLeave && ev.Msg.Epoch == epoch
	}
}

// Issue 16.6: a goodbye whose GossipSub copy is lost (data still in the
// leaver's buffers when it closed) reaches the members its neighbour can
// reach. Chain L – N – M (M is not connected to L, and has been heard by
// L through N); L's goodbye goes out over the direct stream only, as when
// the GossipSub copy was lost. N passes it on to M, with L's own
// signature; M's room gets L's leave.
func TestGoodbyeWithoutItsGossipSubCopyIsPassedOnByTheNeighbour(t *testing.T) {
	l, n, m := newNode(t, Config{}), newNode(t, Config{}), newNode(t, Config{})
	ml, mn, mm := join(t, l, "lobby"), join(t, n, "lobby"), join(t, m, "lobby")
	connect(t, l.h, n.h)
	connect(t, n.h, m.h)
	ml.waitPeerUp(t, 5*time.Second, n.id())
	mm.waitPeerUp(t, 5*time.Second, n.id())
	eventually(t, 5*time.Second, "mesh through n", func() bool { return len(mn.t.Peers()) == 2 })
	// L hears M (through N) before it leaves.
	eventually(t, 10*time.Second, "l hears m", func() bool {
		_ = mm.t.Publish(context.Background(), heartbeatOf(t, m.id()))
		select {
		case ev := <-ml.events:
			return ev.Kind == roomnet.EventMessage && peer.ID(ev.From) == m.id()
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})

	data, err := EncodeMessage(roomnet.Message{Kind: roomnet.KindLeave, Epoch: 7})
	if err != nil {
		t.Fatal(err)
	}
	ml.t.deliverLeave(context.Background(), data) // the direct goodbye alone
	mn.waitFor(t, 5*time.Second, "n gets l's goodbye", isLeave(l.id(), 7))
	ev := mm.waitFor(t, 5*time.Second, "m gets l's goodbye through n", isLeave(l.id(), 7))
	if ev.From != roomnet.PeerID(l.id()) {
		t.Fatalf("goodbye attributed to %s, want l", ev.From)
	}
	if st := mn.t.Stats(); st.LeaveRelayed != 1 {
		t.Errorf("n: LeaveRelayed = %d, want 1", st.LeaveRelayed)
	}
	if st := mm.t.Stats(); st.LeaveReceived != 1 {
		t.Errorf("m: LeaveReceived = %d, want 1", st.LeaveReceived)
	}
}

// A leaver connected to every member it has heard asks nobody to pass its
// goodbye on: no relay streams in a fully connected room.
func TestGoodbyeOfAFullyConnectedLeaverIsNotPassedOn(t *testing.T) {
	l, n, m := newNode(t, Config{}), newNode(t, Config{}), newNode(t, Config{})
	ml, mn, mm := join(t, l, "lobby"), join(t, n, "lobby"), join(t, m, "lobby")
	connect(t, l.h, n.h)
	connect(t, n.h, m.h)
	connect(t, l.h, m.h)
	eventually(t, 5*time.Second, "full mesh", func() bool {
		return len(ml.t.Peers()) == 2 && len(mn.t.Peers()) == 2 && len(mm.t.Peers()) == 2
	})
	for _, x := range []*member{mn, mm} {
		if err := x.t.Publish(context.Background(), heartbeatOf(t, x.n.id())); err != nil {
			t.Fatal(err)
		}
		ml.waitFor(t, 5*time.Second, "l hears "+x.n.id().String(), func(ev roomnet.Event) bool {
			return ev.Kind == roomnet.EventMessage && peer.ID(ev.From) == x.n.id()
		})
	}
	if err := ml.t.Publish(context.Background(), roomnet.Message{Kind: roomnet.KindLeave, Epoch: 3}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*member{mn, mm} {
		x.waitFor(t, 5*time.Second, "goodbye", isLeave(l.id(), 3))
		if st := x.t.Stats(); st.LeaveRelayed != 0 {
			t.Errorf("%s: LeaveRelayed = %d, want 0", x.n.id(), st.LeaveRelayed)
		}
	}
}

// signedBy signs data on the room's topic as author's key would, the way
// signGoodbye does.
func signedBy(t *testing.T, key crypto.PrivKey, roomID string, data []byte) []byte {
	t.Helper()
	h, err := libp2p.New(libp2p.Identity(key), libp2p.NoListenAddrs, libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	b, err := (&Router{h: h, self: h.ID()}).signGoodbye(TopicName(roomID), data)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Version 2 goodbyes may come from anyone (they are passed on), so what
// counts is the author's signature: a valid one is queued as the author's
// goodbye, once; a broken signature, another topic, another kind or bad
// flags are refused.
func TestSignedGoodbyeIsVerifiedNotTrustedFromItsSender(t *testing.T) {
	a := newNode(t, Config{MaxMessageSize: 4096})
	ma := join(t, a, "lobby")
	relayer := newHost(t)
	connect(t, relayer, a.h)
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	author, _ := peer.IDFromPrivateKey(key)
	env := func(m roomnet.Message) []byte {
		b, err := EncodeMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := signedBy(t, key, "lobby", env(roomnet.Message{Kind: roomnet.KindLeave, Epoch: 5}))
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-1] ^= 1
	for _, tc := range []struct {
		name string
		req  []byte
		want byte // 0xff: reset
	}{
		{"broken signature", encodeLeaveRequest2("lobby", 0, tampered), leaveInvalid},
		{"another topic", encodeLeaveRequest2("lobby", 0, signedBy(t, key, "other", env(roomnet.Message{Kind: roomnet.KindLeave, Epoch: 5}))), leaveInvalid},
		{"not a leave", encodeLeaveRequest2("lobby", 0, signedBy(t, key, "lobby", env(roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: 5}))), leaveInvalid},
		{"unknown flags", encodeLeaveRequest2("lobby", 0x80, good), 0xff},
		{"version 1 request", encodeLeaveRequest("lobby", env(roomnet.Message{Kind: roomnet.KindLeave, Epoch: 5})), 0xff},
	} {
		status, err := sendRawLeaveOver(t, relayer, a.id(), LeaveProtocol, tc.req)
		switch {
		case tc.want == 0xff && err == nil:
			t.Errorf("%s: status %d, want the stream reset", tc.name, status)
		case tc.want != 0xff && (err != nil || status != tc.want):
			t.Errorf("%s: status %d, err %v; want %d", tc.name, status, err, tc.want)
		}
	}
	for range 2 {
		if status, err := sendRawLeaveOver(t, relayer, a.id(), LeaveProtocol, encodeLeaveRequest2("lobby", 0, good)); err != nil || status != leaveOK {
			t.Fatalf("valid goodbye passed on: status %d, err %v", status, err)
		}
	}
	ev := ma.waitFor(t, 5*time.Second, "the author's goodbye", isLeave(author, 5))
	if ev.From != roomnet.PeerID(author) {
		t.Fatalf("attributed to %s, want the author", ev.From)
	}
	if st := ma.t.Stats(); st.LeaveReceived != 1 || st.LeaveInvalid != 3 {
		t.Errorf("LeaveReceived %d, LeaveInvalid %d; want 1 (the copy is not queued again), 3", st.LeaveReceived, st.LeaveInvalid)
	}
}

func FuzzDecodeLeaveRequest2(f *testing.F) {
	env, _ := EncodeMessage(roomnet.Message{Kind: roomnet.KindLeave, Epoch: 42})
	f.Add(encodeLeaveRequest2("lobby", leavePassOn, env))
	f.Add(encodeLeaveRequest2("lobby", 0, []byte{1}))
	f.Add([]byte{0x01, 'x', 0x02, 0x01, 0x00})
	f.Add([]byte{0x80, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, flags, signed, err := decodeLeaveRequest2(b, 1024)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeLeaveRequest2(id, flags, signed), b) {
			t.Fatalf("%x does not re-encode to itself", b)
		}
		_, _, _ = openSigned(signed, TopicName(id)) // never panics
	})
}

// A peer that only serves LeaveProtocolV1 (an older version) still gets
// the direct goodbye, as a version 1 request.
func TestGoodbyeFallsBackToVersion1(t *testing.T) {
	a, b := newNode(t, Config{}), newNode(t, Config{})
	ma, mb := join(t, a, "lobby"), join(t, b, "lobby")
	b.h.RemoveStreamHandler(LeaveProtocol)
	connect(t, a.h, b.h)
	eventually(t, 5*time.Second, "a and b subscribed", func() bool { return len(ma.t.Peers()) == 1 && len(mb.t.Peers()) == 1 })
	if err := ma.t.Publish(context.Background(), roomnet.Message{Kind: roomnet.KindLeave, Epoch: 2}); err != nil {
		t.Fatal(err)
	}
	if st := ma.t.Stats(); st.LeaveAcked != 1 {
		t.Fatalf("LeaveAcked = %d, want 1", st.LeaveAcked)
	}
	eventually(t, 5*time.Second, "b queued the direct goodbye", func() bool { return mb.t.Stats().LeaveReceived == 1 })
}

// A member known to the leaver only through a relayed message in a fetch
// reply (the join snapshot) counts as one it is not connected to: the
// goodbye asks its neighbours to pass it on. Before, only members heard
// on the topic counted, so a newcomer that left right after joining
// through one member (its GossipSub copy lost at exit) was reported as a
// timeout by the others (issue 16.6, reproduced with processes under load).
func TestGoodbyeIsPassedOnToMembersKnownOnlyThroughTheJoinSnapshot(t *testing.T) {
	l, n, m := newNode(t, Config{}), newNode(t, Config{}), newNode(t, Config{})
	ml, mn, mm := join(t, l, "lobby"), join(t, n, "lobby"), join(t, m, "lobby")
	connect(t, l.h, n.h)
	connect(t, n.h, m.h)
	ml.waitPeerUp(t, 5*time.Second, n.id())
	mm.waitPeerUp(t, 5*time.Second, n.id())
	// N passes the goodbye on to the room peers it lists: it must list M
	// (and L) first, or under load it may pass it to no one (seen at load
	// average 6: M's PeerUp of N came before N's of M).
	mn.waitPeerUp(t, 5*time.Second, m.id(), l.id())
	// N relays a heartbeat of M, signed by M but never published, so L
	// knows M from the fetch reply only.
	mKey := m.h.Peerstore().PrivKey(m.id())
	hb := signAs(t, m.id(), mKey, TopicName("lobby"), mustEncode(t, heartbeatOf(t, m.id())), false)
	mn.serve(func() (roomnet.Served, bool) {
		return roomnet.Served{State: heartbeatOf(t, n.id()), Relayed: [][]byte{hb}}, true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reply, err := ml.t.Fetch(ctx, roomnet.PeerID(n.id()))
	if err != nil || len(reply.Relayed) != 1 {
		t.Fatalf("Fetch = %d relayed, %v; want M's heartbeat", len(reply.Relayed), err)
	}

	data, err := EncodeMessage(roomnet.Message{Kind: roomnet.KindLeave, Epoch: 7})
	if err != nil {
		t.Fatal(err)
	}
	ml.t.deliverLeave(context.Background(), data) // the direct goodbye alone
	mm.waitFor(t, 5*time.Second, "m gets l's goodbye through n", isLeave(l.id(), 7))
	if st := mn.t.Stats(); st.LeaveRelayed != 1 {
		t.Errorf("n: LeaveRelayed = %d, want 1", st.LeaveRelayed)
	}
}

// heartbeatOf is a valid heartbeat of id at epoch 1 (its own state, same
// epoch as the envelope).
func heartbeatOf(t testing.TB, id peer.ID) roomnet.Message {
	t.Helper()
	return roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: 1, State: presenceAt(t, id, 1)}
}
