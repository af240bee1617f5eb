package rooms_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/gossip"
	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
	tn "github.com/convene-p2p/convene/test/internal/testnet"

	"github.com/convene-p2p/convene/room/roomnet"
)

// honest is an honest member with a pubsub tracer on its host.
type honest struct {
	r  *repo.Repo
	rm *room.Room
	tr *tn.Tracer
}

func newHonest(t testing.TB, name, roomID string) *honest {
	cfg := tn.Config(name)
	tr := &tn.Tracer{}
	cfg.Gossip.Options = []pubsub.Option{pubsub.WithRawTracer(tr)}
	r := tn.Loopback(t, cfg)
	return &honest{r: r, rm: tn.Join(t, r, roomID), tr: tr}
}

// cursorOf returns p's cursor x at h, or -1.
func (h *honest) cursorOf(p room.PeerID) int {
	var c struct{ X int }
	if ok, err := h.rm.GetJSON(p, "cursor", &c); !ok || err != nil {
		return -1
	}
	return c.X
}

// settle makes sure that h's room has processed everything h's host had
// received before: a at writes a new "marker" value and the test waits
// until h sees it (the topic's inbound queue is FIFO).
func settle(t *testing.T, a *room.Room, hs ...*honest) {
	t.Helper()
	v := fmt.Sprint(time.Now().UnixNano())
	if err := a.Set("marker", []byte(v)); err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		tn.Eventually(t, tn.Wait, "marker at "+h.r.Self().Name, func() bool {
			got, _ := h.rm.Get(a.Self().Peer, "marker")
			return string(got) == v
		})
	}
}

func isKind(k roomnet.MessageKind) func(roomnet.Message) bool {
	return func(m roomnet.Message) bool { return m.Kind == k }
}

// A hostile peer — plain go-libp2p-pubsub nodes on the room topic, and
// bare hosts writing raw GossipSub RPCs — attacks honest members A, B and
// C. It cannot forge A's presence (a heartbeat whose state names A, a
// message claiming A as its author with a wrong or missing signature); it
// cannot make A's state regress by replaying A's captured, validly signed
// messages of an older incarnation (a delta, a heartbeat and even A's old
// goodbye) to a member that never saw them, nor to one that did; it cannot
// crash a node with garbage, oversized messages, malformed RPC frames or
// garbage on the Fetch protocol; its flood is cut at the rate limit. The
// honest members keep working throughout: membership stays exactly
// {A, B, C}, and A's updates keep arriving.
func TestHostilePeerCannotForgeReplayOrCrashHonestMembersKeepWorking(t *testing.T) {
	const roomID = "arena"
	a, b := newHonest(t, "A", roomID), newHonest(t, "B", roomID)
	tn.Connect(t, a.r.Host(), b.r.Host())
	pa := tn.Peer(a.r)

	// The eavesdropper captures A's signed messages.
	spy := tn.NewPlain(t, roomID)
	tn.Connect(t, spy.Host, a.r.Host())
	tn.Connect(t, spy.Host, b.r.Host())
	spy.WaitPeers(t, 2)
	author := peer.ID(pa)

	if err := a.rm.SetJSON("cursor", map[string]int{"x": 1}); err != nil {
		t.Fatal(err)
	}
	oldDelta := spy.Capture(t, tn.Wait, author, isKind(roomnet.KindDelta))
	oldHeartbeat := spy.Capture(t, tn.Wait, author, isKind(roomnet.KindHeartbeat))
	ctx := context.Background()
	if err := a.r.LeaveRoom(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	oldLeave := spy.Capture(t, tn.Wait, author, isKind(roomnet.KindLeave))
	if _, err := a.r.JoinRoom(ctx, roomID, room.Config{}); err != nil { // rejoin: new epoch
		t.Fatal(err)
	}
	if err := a.rm.SetJSON("cursor", map[string]int{"x": 2}); err != nil {
		t.Fatal(err)
	}
	tn.Eventually(t, tn.Wait, "B sees A's new incarnation", func() bool { return b.cursorOf(pa) == 2 })

	// C joins now: it has never seen A's first incarnation.
	c := newHonest(t, "C", roomID)
	tn.ConnectAll(t, a.r.Host(), b.r.Host(), c.r.Host())
	tn.Eventually(t, tn.Wait, "C sees A", func() bool { return c.cursorOf(pa) == 2 })
	recB, recC := tn.RecordRoom(t, b.rm), tn.RecordRoom(t, c.rm)
	members := []room.PeerID{pa, tn.Peer(b.r), tn.Peer(c.r)}
	for _, h := range []*honest{a, b, c} {
		tn.Eventually(t, tn.Wait, h.r.Self().Name+" lists A, B, C", func() bool { return tn.HasMembers(h.rm, members...) })
	}

	// Replay: A's old-epoch delta, heartbeat and goodbye, validly signed by
	// A, injected straight into C (never seen) and B (seen before).
	acceptedC := c.r.Stats().Accepted
	replayed := time.Now()
	tn.NewInjector(t).SendRPC(t, c.r.Host(), roomID, oldDelta, oldHeartbeat, oldLeave)
	tn.Eventually(t, tn.Wait, "C's validator passes the three replays on (they are genuine)", func() bool {
		return c.r.Stats().Accepted >= acceptedC+3
	})
	dupB := b.tr.Duplicates()
	tn.NewInjector(t).SendRPC(t, b.r.Host(), roomID, oldDelta, oldHeartbeat, oldLeave)
	tn.Eventually(t, tn.Wait, "B drops the replays as duplicates", func() bool { return b.tr.Duplicates() >= dupB+3 })
	settle(t, a.rm, b, c)
	for _, h := range []*honest{b, c} {
		if x := h.cursorOf(pa); x != 2 {
			t.Errorf("after the replay %s holds A's cursor %d, want 2 (no regression)", h.r.Self().Name, x)
		}
		if !tn.HasMembers(h.rm, members...) {
			t.Errorf("after the replay %s lists %d members, want A, B, C", h.r.Self().Name, len(h.rm.Members()))
		}
	}
	for name, rec := range map[string]*tn.Recorder[room.Event]{"B": recB, "C": recC} {
		if s, ok := rec.Find(tn.MemberLeft(pa)); ok {
			t.Errorf("%s dropped A after the replay of its old goodbye (reason %v)", name, s.Ev.Reason)
		}
		// Not even for a moment: no change of A's cursor since the replay.
		if s, ok := rec.Find(func(ev room.Event) bool {
			ch := ev.Change
			return ev.Type == room.PresenceChanged && ch.Peer == pa &&
				(slices.Contains(ch.Updated, "cursor") || slices.Contains(ch.Removed, "cursor") || slices.Contains(ch.Added, "cursor"))
		}); ok && s.At.After(replayed) {
			t.Errorf("%s changed A's cursor after the replay: %+v", name, s.Ev.Change)
		}
	}

	// Forgery 1: a validly signed heartbeat from a plain node whose
	// presence state names A (with a huge epoch, so that it would win).
	forger := tn.NewPlain(t, roomID)
	tn.Connect(t, forger.Host, b.r.Host())
	forger.WaitPeers(t, 1)
	forged := tn.Encode(t, roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: 1 << 60, Name: "A",
		State: tn.State(t, author, 1<<60, "cursor", `{"x":666}`)})
	wrongB := b.r.Stats().WrongAuthor
	forger.Publish(t, forged)
	tn.Eventually(t, tn.Wait, "B rejects the heartbeat naming A", func() bool { return b.r.Stats().WrongAuthor > wrongB })

	// Forgery 2 and 3: raw messages claiming A as author, signed by the
	// attacker's key, or not signed at all.
	badSig := tn.Signed(t, roomID, author, forger.Key, forged)
	tn.NewInjector(t).SendRPC(t, b.r.Host(), roomID, badSig)
	tn.Eventually(t, tn.Wait, "B rejects the wrongly signed message", func() bool {
		return b.tr.Rejected(pubsub.RejectInvalidSignature) >= 1
	})
	unsigned := tn.Signed(t, roomID, author, forger.Key, forged)
	unsigned.Signature, unsigned.Key = nil, nil
	tn.NewInjector(t).SendRPC(t, b.r.Host(), roomID, unsigned)
	tn.Eventually(t, tn.Wait, "B rejects the unsigned message", func() bool {
		return b.tr.Rejected(pubsub.RejectMissingSignature) >= 1
	})
	settle(t, a.rm, b, c)
	if x := b.cursorOf(pa); x != 2 {
		t.Errorf("after the forgeries B holds A's cursor %d, want 2", x)
	}
	if tn.CountMember(b.rm, room.PeerID(forger.ID())) != 0 {
		t.Errorf("B admitted the forger as a member")
	}

	// Crash attempts: garbage and an oversized message on the topic (each
	// from its own plain node: a rejected sender is graylisted, and its
	// later messages would not even reach the validator).
	garbage := tn.NewPlain(t, roomID)
	tn.Connect(t, garbage.Host, b.r.Host())
	garbage.WaitPeers(t, 1)
	malformedB := b.r.Stats().Malformed
	garbage.Publish(t, []byte("\xff\x00 this is not an envelope"))
	tn.Eventually(t, tn.Wait, "B rejects the garbage", func() bool { return b.r.Stats().Malformed > malformedB })

	huge := tn.NewPlain(t, roomID)
	tn.Connect(t, huge.Host, b.r.Host())
	huge.WaitPeers(t, 1)
	oversizedB := b.r.Stats().Oversized
	huge.Publish(t, tn.Encode(t, roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: make([]byte, 900<<10)}))
	tn.Eventually(t, tn.Wait, "B rejects the 900 KiB message", func() bool { return b.r.Stats().Oversized > oversizedB })

	// Malformed RPC frames on GossipSub streams, and garbage on Fetch.
	notProto := []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02}
	tn.NewInjector(t).SendRaw(t, b.r.Host(), binary.AppendUvarint(nil, uint64(len(notProto))), notProto)
	tn.NewInjector(t).SendRaw(t, b.r.Host(), binary.AppendUvarint(nil, 1<<40), []byte("short"))
	big := make([]byte, 2<<20)
	tn.NewInjector(t).SendRaw(t, b.r.Host(), binary.AppendUvarint(nil, uint64(len(big))), big)
	fetchGarbage(t, b.r, []byte("\x00\x01garbage"))
	fetchGarbage(t, b.r, append(binary.AppendUvarint(nil, 1<<40), "tiny"...))
	fetchGarbage(t, b.r, make([]byte, 1<<20))

	// A flood of valid broadcasts, as fast as the attacker can publish (with
	// a large outbound queue, so that its own GossipSub does not drop them).
	flooder := tn.NewPlain(t, roomID, pubsub.WithPeerOutboundQueueSize(8192))
	tn.Connect(t, flooder.Host, b.r.Host())
	flooder.WaitPeers(t, 1)
	// A member (only members' broadcasts are delivered): it says hello.
	fe := uint64(time.Now().UnixMilli())
	kind := roomnet.KindHello
	tn.Announce(t, tn.Wait, "B and C admit the flooder", func() {
		flooder.Publish(t, tn.Encode(t, roomnet.Message{Kind: kind, Epoch: fe, Name: "flooder", State: tn.State(t, flooder.ID(), fe)}))
		kind = roomnet.KindHeartbeat
	}, func() bool {
		return tn.CountMember(b.rm, room.PeerID(flooder.ID())) == 1 && tn.CountMember(c.rm, room.PeerID(flooder.ID())) == 1
	})
	members = append(members, room.PeerID(flooder.ID()))
	floods := 3 * gossip.DefaultBurst
	floodStart := time.Now()
	for i := range floods {
		flooder.Publish(t, tn.Encode(t, roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: fe, Payload: fmt.Appendf(nil, "flood %d", i)}))
	}
	floodTime := time.Since(floodStart)
	settle(t, a.rm, b) // B's room has handled what B received of the flood

	// Honest members keep working.
	if err := a.rm.SetJSON("cursor", map[string]int{"x": 3}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*honest{b, c} {
		tn.Eventually(t, tn.Wait, h.r.Self().Name+" sees A's cursor 3 after the attacks", func() bool { return h.cursorOf(pa) == 3 })
		if !tn.HasMembers(h.rm, members...) {
			ms := h.rm.Members()
			t.Errorf("after the attacks %s lists %d members, want exactly A, B, C and the flooder", h.r.Self().Name, len(ms))
		}
	}
	if err := b.rm.SetJSON("cursor", map[string]int{"x": 4}); err != nil {
		t.Fatal(err)
	}
	tn.Eventually(t, tn.Wait, "A sees B's cursor after the attacks", func() bool {
		var v struct{ X int }
		ok, _ := a.rm.GetJSON(tn.Peer(b.r), "cursor", &v)
		return ok && v.X == 4
	})
	// A token bucket lets through at most Burst plus Rate per second of the
	// span over which B validated the flood, which ends before B's room
	// delivered the last flood message.
	delivered := 0
	var last time.Time
	for _, s := range recB.Events() {
		if s.Ev.Type == room.Broadcast && s.Ev.Member.Peer == room.PeerID(flooder.ID()) {
			delivered++
			last = s.At
		}
	}
	span := last.Sub(floodStart)
	limit := gossip.DefaultBurst + int(gossip.DefaultRate*span.Seconds()) + 5
	if delivered > limit {
		t.Errorf("B delivered %d of %d flood broadcasts over %v, above burst %d + rate %d/s", delivered, floods, span, gossip.DefaultBurst, gossip.DefaultRate)
	}
	if limit >= floods {
		// On a loaded machine the attacker may publish slower than the
		// bucket refills; then nothing here exceeded the rate and the cut
		// is not exercised (gossip's hostile test covers it at 10x rate).
		t.Logf("flood took %v: slower than the rate limit, so the bucket did not have to cut it", floodTime)
	}
	st := b.r.Stats()
	t.Logf("B after the attacks: %+v; pubsub rejected %d invalid-signature, %d missing-signature, %d duplicates; flood: %d of %d delivered in %v",
		st, b.tr.Rejected(pubsub.RejectInvalidSignature), b.tr.Rejected(pubsub.RejectMissingSignature), b.tr.Duplicates(), delivered, floods, floodTime)
}

// fetchGarbage writes data on a Fetch stream to r and reads whatever
// comes back (an error reply or a reset), bounded by a deadline.
func fetchGarbage(t *testing.T, r *repo.Repo, data []byte) {
	t.Helper()
	in := tn.NewInjector(t)
	ctx, cancel := context.WithTimeout(context.Background(), tn.Wait)
	defer cancel()
	if err := in.Host.Connect(ctx, peer.AddrInfo{ID: r.ID(), Addrs: r.Host().Addrs()}); err != nil {
		t.Fatal(err)
	}
	s, err := in.Host.NewStream(ctx, r.ID(), gossip.FetchProtocol)
	if err != nil {
		t.Fatalf("fetch stream: %v", err)
	}
	defer s.Reset()
	_ = s.SetDeadline(time.Now().Add(tn.Wait))
	_, _ = s.Write(data)
	_ = s.CloseWrite()
	buf := make([]byte, 4096)
	for {
		if _, err := s.Read(buf); err != nil {
			return
		}
	}
}
