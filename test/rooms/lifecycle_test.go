package rooms_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/convene-p2p/convene/gossip"
	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
	tn "github.com/convene-p2p/convene/test/internal/testnet"
)

// lingerConfig is room.LocalConfig with a short linger.
func lingerConfig(linger time.Duration) room.Config {
	cfg := room.LocalConfig()
	cfg.Linger = linger
	return cfg
}

// After A leaves, its room lingers for Config.Linger: Rooms() and Room()
// still return it (status left) and it still receives B's updates; then
// it is destroyed: RoomDestroyed, Rooms() no longer lists it, Room() finds
// nothing. B drops A with reason left at once.
func TestRoomLingersAfterLeaveThenIsDestroyed(t *testing.T) {
	const linger = time.Second
	cfgA := tn.Config("A")
	cfgA.Room = lingerConfig(linger)
	a := tn.Loopback(t, cfgA)
	b := tn.Loopback(t, tn.Config("B"))
	ra, rb := tn.Join(t, a, "linger"), tn.Join(t, b, "linger")
	tn.Connect(t, a.Host(), b.Host())
	tn.Eventually(t, tn.Wait, "A and B see each other", func() bool { return len(ra.Members()) == 2 && len(rb.Members()) == 2 })
	evA := tn.RecordRepo(t, a)
	recB := tn.RecordRoom(t, rb)

	leave := time.Now()
	if err := a.LeaveRoom(t.Context(), "linger"); err != nil {
		t.Fatal(err)
	}
	if s := recB.WaitFor(t, tn.Wait, "B drops A", tn.MemberLeft(tn.Peer(a))); s.Ev.Reason != room.ReasonLeft {
		t.Errorf("B dropped A with reason %v, want left", s.Ev.Reason)
	}
	if got, ok := a.Room("linger"); !ok || got != ra || ra.Status() != room.Left {
		t.Fatalf("right after Leave: Room() = %v, %v (status %v), want the lingering room", got, ok, ra.Status())
	}
	if rs := a.Rooms(); len(rs) != 1 || rs[0] != ra {
		t.Fatalf("right after Leave: Rooms() has %d rooms, want the lingering one", len(rs))
	}
	if err := rb.SetJSON("cursor", 7); err != nil {
		t.Fatal(err)
	}
	tn.Eventually(t, tn.Wait, "the lingering room still receives B's presence", func() bool {
		var v int
		ok, _ := ra.GetJSON(tn.Peer(b), "cursor", &v)
		return ok && v == 7
	})

	destroyed := evA.WaitFor(t, linger+tn.Wait, "RoomDestroyed at A", func(ev repo.Event) bool {
		return ev.Type == repo.RoomDestroyed && ev.Room == "linger"
	})
	lived := destroyed.At.Sub(leave)
	t.Logf("room destroyed %v after Leave (Linger %v)", lived.Round(time.Millisecond), linger)
	if lived < linger {
		t.Errorf("room destroyed %v after Leave, before its linger %v", lived, linger)
	}
	if _, ok := a.Room("linger"); ok {
		t.Errorf("Room() still finds the destroyed room")
	}
	if rs := a.Rooms(); len(rs) != 0 {
		t.Errorf("Rooms() lists %d rooms after the destroy, want 0", len(rs))
	}
	if ra.Status() != room.Closed {
		t.Errorf("destroyed room status %v, want closed", ra.Status())
	}
	select {
	case <-ra.Done():
	default:
		t.Errorf("destroyed room's Done is not closed")
	}
}

// Rejoining during the linger keeps the same room: JoinRoom returns the
// same handle, joined again (a new epoch: B sees A leave, then join), and
// the room is not destroyed when the linger would have run out.
func TestRejoinWithinLingerKeepsTheRoom(t *testing.T) {
	const linger = time.Second
	cfgA := tn.Config("A")
	cfgA.Room = lingerConfig(linger)
	a := tn.Loopback(t, cfgA)
	b := tn.Loopback(t, tn.Config("B"))
	ra, rb := tn.Join(t, a, "again"), tn.Join(t, b, "again")
	tn.Connect(t, a.Host(), b.Host())
	pa := tn.Peer(a)
	tn.Eventually(t, tn.Wait, "B sees A", func() bool { return tn.CountMember(rb, pa) == 1 })
	evA := tn.RecordRepo(t, a)
	recB := tn.RecordRoom(t, rb)

	leave := time.Now()
	if err := ra.Leave(t.Context()); err != nil {
		t.Fatal(err)
	}
	recB.WaitFor(t, tn.Wait, "B sees A leave", tn.MemberLeft(pa))
	again, err := a.JoinRoom(t.Context(), "again", room.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(leave) >= linger {
		t.Skipf("the rejoin came %v after the leave, after the linger: machine too slow for this test", time.Since(leave))
	}
	if again != ra || ra.Status() != room.Joined {
		t.Fatalf("JoinRoom during the linger returned %p (status %v), want the same room %p joined", again, again.Status(), ra)
	}
	if err := ra.SetJSON("cursor", "back"); err != nil {
		t.Fatal(err)
	}
	recB.WaitFor(t, tn.Wait, "B sees A join again", tn.MemberJoined(pa))
	tn.Eventually(t, tn.Wait, "B sees A's presence after the rejoin", func() bool {
		var v string
		ok, _ := rb.GetJSON(pa, "cursor", &v)
		return ok && v == "back"
	})
	// Past the original linger deadline (plus margin) the room is alive.
	tn.Never(t, time.Until(leave.Add(linger+500*time.Millisecond)), "the rejoined room was destroyed", func() bool {
		_, destroyed := evA.Find(func(ev repo.Event) bool { return ev.Type == repo.RoomDestroyed })
		return destroyed || ra.Status() != room.Joined
	})
	if rs := a.Rooms(); len(rs) != 1 || rs[0] != ra {
		t.Errorf("Rooms() has %d rooms, want the rejoined one", len(rs))
	}
	if n := tn.CountMember(rb, pa); n != 1 {
		t.Errorf("B lists A %d times, want 1", n)
	}
}

// Repo events are forward-only (a watcher sees nothing of what happened
// before it started) and, per room, in order: room-created, then
// member-joined / member-left of remote members (a member is joined before
// it leaves, never joined twice), then room-destroyed; a room created again
// after its destruction starts a new such sequence. The exact sequence of
// one scenario is checked: B and C join; C leaves (reason left); B crashes
// (reason timeout); A leaves and the room is destroyed; A joins again; A
// closes.
func TestRepoEventsAreForwardOnlyAndInOrderPerRoom(t *testing.T) {
	cfgA := tn.Config("A")
	cfgA.Room = lingerConfig(500 * time.Millisecond)
	a := tn.Loopback(t, cfgA)
	tn.Join(t, a, "before") // happened before the watcher: never reported
	all := tn.RecordRepo(t, a)

	tn.Join(t, a, "ev")
	bh := tn.Host(t, nil)
	b := tn.OnHost(t, bh.Host(), tn.Config("B"))
	c := tn.Loopback(t, tn.Config("C"))
	tn.Join(t, b, "ev")
	tn.Join(t, c, "ev")
	tn.ConnectAll(t, a.Host(), bh.Host(), c.Host())
	pb, pc := tn.Peer(b), tn.Peer(c)
	joined := func(p room.PeerID) func(repo.Event) bool {
		return func(ev repo.Event) bool { return ev.Type == repo.MemberJoined && ev.Member.Peer == p }
	}
	left := func(p room.PeerID) func(repo.Event) bool {
		return func(ev repo.Event) bool { return ev.Type == repo.MemberLeft && ev.Member.Peer == p }
	}
	all.WaitFor(t, tn.Wait, "B joined", joined(pb))
	all.WaitFor(t, tn.Wait, "C joined", joined(pc))
	if err := c.LeaveRoom(t.Context(), "ev"); err != nil {
		t.Fatal(err)
	}
	all.WaitFor(t, tn.Wait, "C left", left(pc))
	if err := bh.Close(); err != nil { // crash
		t.Fatal(err)
	}
	all.WaitFor(t, room.LocalConfig().Timeout+tn.Wait, "B left", left(pb))
	if err := a.LeaveRoom(t.Context(), "ev"); err != nil {
		t.Fatal(err)
	}
	all.WaitFor(t, tn.Wait, "ev destroyed", func(ev repo.Event) bool { return ev.Type == repo.RoomDestroyed && ev.Room == "ev" })
	tn.Join(t, a, "ev")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	all.WaitFor(t, tn.Wait, "second ev destroyed by Close", func(ev repo.Event) bool {
		return ev.Type == repo.RoomDestroyed && ev.Room == "ev" && countType(all, repo.RoomDestroyed, "ev") == 2
	})

	var got []string
	for _, s := range all.Events() {
		ev := s.Ev
		if ev.Room != "ev" {
			if ev.Room == "before" && ev.Type != repo.RoomDestroyed {
				t.Errorf("forward-only: the watcher reported %v for room %q, joined before it started", ev.Type, ev.Room)
			}
			continue
		}
		switch ev.Type {
		case repo.MemberJoined:
			got = append(got, fmt.Sprintf("joined %s", ev.Member.Name))
		case repo.MemberLeft:
			got = append(got, fmt.Sprintf("left %s %v", ev.Member.Name, ev.Reason))
		default:
			got = append(got, ev.Type.String())
		}
	}
	// B and C may join in either order.
	want1 := []string{"room-created", "joined B", "joined C", "left C left", "left B timeout", "room-destroyed", "room-created", "room-destroyed"}
	want2 := []string{"room-created", "joined C", "joined B", "left C left", "left B timeout", "room-destroyed", "room-created", "room-destroyed"}
	if fmt.Sprint(got) != fmt.Sprint(want1) && fmt.Sprint(got) != fmt.Sprint(want2) {
		t.Errorf("events of room ev:\n got %q\nwant %q", got, want1)
	}
	checkWellFormed(t, all.Events())
}

func countType(r *tn.Recorder[repo.Event], typ repo.EventType, id string) int {
	n := 0
	for _, s := range r.Events() {
		if s.Ev.Type == typ && s.Ev.Room == id {
			n++
		}
	}
	return n
}

// checkWellFormed checks the per-room grammar of a Repo event stream that
// started before any room existed: created (joined|left)* destroyed,
// repeated; a member joins before it leaves and never joins twice.
func checkWellFormed(t *testing.T, evs []tn.Stamped[repo.Event]) {
	t.Helper()
	type state struct {
		open    bool
		members map[room.PeerID]bool
	}
	rooms := map[string]*state{}
	for i, s := range evs {
		ev := s.Ev
		st := rooms[ev.Room]
		if st == nil {
			st = &state{members: map[room.PeerID]bool{}}
			rooms[ev.Room] = st
		}
		switch ev.Type {
		case repo.RoomCreated:
			if st.open {
				t.Errorf("event %d: room-created for open room %q", i, ev.Room)
			}
			st.open, st.members = true, map[room.PeerID]bool{}
		case repo.RoomDestroyed:
			if !st.open && ev.Room != "before" {
				t.Errorf("event %d: room-destroyed for room %q that is not open", i, ev.Room)
			}
			st.open = false
		case repo.MemberJoined:
			if !st.open || st.members[ev.Member.Peer] {
				t.Errorf("event %d: member-joined %s in %q (open %v, already member %v)", i, ev.Member.Name, ev.Room, st.open, st.members[ev.Member.Peer])
			}
			st.members[ev.Member.Peer] = true
		case repo.MemberLeft:
			if !st.open || !st.members[ev.Member.Peer] {
				t.Errorf("event %d: member-left %s in %q (open %v, member %v)", i, ev.Member.Name, ev.Room, st.open, st.members[ev.Member.Peer])
			}
			delete(st.members, ev.Member.Peer)
		case repo.Lagged:
			t.Errorf("event %d: lagged", i)
		}
	}
}

// room's documentation: after the linger, "it is destroyed: status Closed,
// the network closed, RoomDestroyed delivered, Done closed". So once a
// watcher has read RoomDestroyed, the room's network (its gossip Topic) is
// closed and the room can be joined again on the same Router.
func TestRoomDestroyedIsDeliveredAfterTheNetworkIsClosed(t *testing.T) {
	h := tn.Host(t, nil)
	router, err := gossip.New(t.Context(), h.Host(), gossip.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = router.Close() })
	for k := range 5 {
		topic, err := router.Join("destroyed")
		if err != nil {
			t.Fatalf("round %d: joining right after RoomDestroyed of the previous round: %v", k, err)
		}
		rm, err := room.New("destroyed", room.Identity{Peer: room.PeerID(h.ID())}, lingerConfig(50*time.Millisecond), topic)
		if err != nil {
			t.Fatal(err)
		}
		w := rm.Watch()
		if err := rm.Leave(t.Context()); err != nil {
			t.Fatal(err)
		}
		for {
			ev, err := w.Next(t.Context())
			if err != nil {
				t.Fatalf("round %d: watcher ended without RoomDestroyed: %v", k, err)
			}
			if ev.Type == room.RoomDestroyed {
				break
			}
		}
		// The loop's next Join runs right after RoomDestroyed was read.
		t.Cleanup(func() { <-rm.Done() })
	}
}
