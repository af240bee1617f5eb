package rooms_test

import (
	"context"
	"fmt"
	"github.com/convene-p2p/convene/gossip"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"testing"
	"time"

	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
	tn "github.com/convene-p2p/convene/test/internal/testnet"
)

// existing is the number of members already in the room in the join and
// leave measurements.
const existing = 10

// seesAll reports whether rm lists the members of rooms (and itself) and
// holds each one's cursor {x:i, y:i}.
func seesAll(rm *room.Room, rooms []*room.Room) bool {
	if len(rm.Members()) != len(rooms)+1 {
		return false
	}
	for i, o := range rooms {
		var c struct{ X, Y int }
		if ok, err := rm.GetJSON(o.Self().Peer, "cursor", &c); !ok || err != nil || c.X != i || c.Y != i {
			return false
		}
	}
	return true
}

// A newcomer to a room of 10 members, each with presence set, sees every
// member (with its name) and every member's presence: once when it joins
// while already connected to all of them (the LAN case: mDNS has dialled
// everyone), once when it joins first and then connects to a single
// member. Both times are logged; the assertion is completion within a
// generous deadline (timing targets belong to the benchmarks).
func TestJoinSnapshotNewcomerSeesAllTenMembersAndTheirPresence(t *testing.T) {
	t0 := time.Now()
	repos, rooms := tn.Cluster(t, existing, "m", "snap")
	t.Logf("cluster ready in %v", time.Since(t0))
	for i, rm := range rooms {
		if err := rm.SetJSON("cursor", map[string]int{"x": i, "y": i}); err != nil {
			t.Fatal(err)
		}
	}
	for i, rm := range rooms {
		tn.Eventually(t, tn.Wait, fmt.Sprintf("m%d sees every cursor", i), func() bool { return allCursors(rm, rooms) })
	}

	t.Logf("cluster of %d with every cursor everywhere after %v", existing, time.Since(t0))
	// Three newcomers per way of arriving; each closes (goodbye) after
	// it is measured.
	const samples = 3
	var all, one []time.Duration
	for k := range samples {
		// Connected to every member (the LAN case: mDNS dialled them),
		// then JoinRoom.
		n := tn.Loopback(t, tn.Config(fmt.Sprintf("newcomer-all-%d", k)))
		for _, r := range repos {
			tn.Connect(t, n.Host(), r.Host())
		}
		start := time.Now()
		rm := tn.Join(t, n, "snap")
		tn.Eventually(t, tn.Wait, "newcomer (connected to all) sees all 10 members and their presence", func() bool { return seesAll(rm, rooms) })
		all = append(all, time.Since(start))
		checkNames(t, rm, rooms)
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}

		// JoinRoom, then connect to one member only.
		n = tn.Loopback(t, tn.Config(fmt.Sprintf("newcomer-one-%d", k)))
		rm = tn.Join(t, n, "snap")
		start = time.Now()
		tn.Connect(t, n.Host(), repos[k].Host())
		tn.Eventually(t, tn.Wait, "newcomer (connected to one) sees all 10 members and their presence", func() bool { return seesAll(rm, rooms) })
		one = append(one, time.Since(start))
		checkNames(t, rm, rooms)
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("join snapshot, %d existing members with presence, loopback TCP: connected to all, JoinRoom -> all seen: %s",
		existing, tn.Durations(all))
	t.Logf("join snapshot, %d existing members with presence, loopback TCP: joined, Connect to one member -> all seen: %s",
		existing, tn.Durations(one))
}

// allCursors reports whether rm holds the cursor {x:i, y:i} of every
// member of rooms.
func allCursors(rm *room.Room, rooms []*room.Room) bool {
	for i, o := range rooms {
		var c struct{ X, Y int }
		if ok, err := rm.GetJSON(o.Self().Peer, "cursor", &c); !ok || err != nil || c.X != i || c.Y != i {
			return false
		}
	}
	return true
}

// checkNames fails unless rm lists each member of rooms, once, under its name.
func checkNames(t *testing.T, rm *room.Room, rooms []*room.Room) {
	t.Helper()
	tn.Eventually(t, tn.Wait, "every member named", func() bool {
		names := map[room.PeerID]string{}
		for _, m := range rm.Members() {
			if _, dup := names[m.Peer]; dup {
				t.Fatalf("%s lists %s twice", rm.Self().Name, tn.Short(m.Peer))
			}
			names[m.Peer] = m.Name
		}
		for _, o := range rooms {
			if names[o.Self().Peer] != o.Self().Name {
				return false
			}
		}
		return true
	})
}

// In a room of 10 connected members, three leave one after the other;
// every other member reports each of them gone with reason left, at once
// (long before Timeout). Latency from the Leave call to the MemberLeft
// event at each remaining member is logged, and so are the Repo events.
func TestLeaveIsSeenWithReasonLeftAtEveryOtherPeer(t *testing.T) {
	repos, rooms := tn.Cluster(t, existing, "m", "leave")
	recs := make([]*tn.Recorder[room.Event], existing)
	repoRecs := make([]*tn.Recorder[repo.Event], existing)
	for i := range rooms {
		recs[i] = tn.RecordRoom(t, rooms[i])
		repoRecs[i] = tn.RecordRepo(t, repos[i])
	}
	timeout := room.LocalConfig().Timeout

	var lat []time.Duration
	const leavers = 3
	for l := range leavers {
		p := rooms[l].Self().Peer
		start := time.Now()
		if err := repos[l].LeaveRoom(context.Background(), "leave"); err != nil {
			t.Fatal(err)
		}
		for i := leavers; i < existing; i++ { // members that stay
			s := recs[i].WaitFor(t, tn.Wait, fmt.Sprintf("m%d: m%d left", i, l), tn.MemberLeft(p))
			if s.Ev.Reason != room.ReasonLeft {
				t.Errorf("m%d: m%d left with reason %v, want left", i, l, s.Ev.Reason)
			}
			d := s.At.Sub(start)
			if d >= timeout {
				t.Errorf("m%d saw m%d's leave after %v, not before Timeout %v", i, l, d, timeout)
			}
			lat = append(lat, d)
			r := repoRecs[i].WaitFor(t, tn.Wait, fmt.Sprintf("m%d: repo room-member-left for m%d", i, l), func(ev repo.Event) bool {
				return ev.Type == repo.MemberLeft && ev.Member.Peer == p
			})
			if r.Ev.Reason != room.ReasonLeft || r.Ev.Room != "leave" || r.Ev.Member.Name != rooms[l].Self().Name {
				t.Errorf("m%d: repo event %+v, want member-left of %s in room leave with reason left", i, r.Ev, rooms[l].Self().Name)
			}
		}
		for i := leavers; i < existing; i++ {
			if tn.CountMember(rooms[i], p) != 0 {
				t.Errorf("m%d still lists m%d after its leave event", i, l)
			}
		}
	}
	t.Logf("leave latency (Leave call -> MemberLeft at each remaining member), %d members on loopback TCP: %s",
		existing, tn.Durations(lat))
}

// DESIGN.md, "Join snapshot": a newcomer sees every member "without
// waiting for a heartbeat"; "the aim is ≤ 100 ms once it is connected to
// one peer of the room". With production timings (Timeout 30 s, so a
// heartbeat every 10 s) a newcomer that joins and then connects to one
// member of a 10-member room must see all of them and their presence
// within 2 s (the 1 s target plus slack for a loaded machine), well before
// any regular heartbeat. The members it is not connected to reach it in
// its neighbour's fetch reply, as their own signed messages (verified by
// the newcomer); their answers to its hello would travel along a GossipSub
// mesh that the newcomer joins only a GossipSub heartbeat later.
func TestJoinSnapshotThroughOneConnectedMemberDoesNotWaitForHeartbeats(t *testing.T) {
	const deadline = 2 * time.Second
	prod := room.Config{Timeout: 30 * time.Second} // heartbeat 10 s
	repos := make([]*repo.Repo, existing)
	rooms := make([]*room.Room, existing)
	tracers := make([]*tn.Tracer, existing)
	for i := range repos {
		cfg := tn.Config(fmt.Sprintf("m%d", i))
		cfg.Room = prod
		tracers[i] = &tn.Tracer{}
		cfg.Gossip.Options = []pubsub.Option{pubsub.WithRawTracer(tracers[i])}
		repos[i] = tn.Loopback(t, cfg)
		rooms[i] = tn.Join(t, repos[i], "one-hop")
		if err := rooms[i].SetJSON("cursor", map[string]int{"x": i, "y": i}); err != nil {
			t.Fatal(err)
		}
	}
	tn.ConnectAll(t, tn.Hosts(repos...)...)
	for i, rm := range rooms {
		tn.Eventually(t, tn.Wait, fmt.Sprintf("m%d sees every cursor", i), func() bool { return allCursors(rm, rooms) })
	}
	// Steady state: every member's GossipSub mesh has formed (at least Dlo
	// peers), so relaying works as it does in a room that has existed for
	// a while.
	dlo := gossip.GossipSubParams().Dlo
	for i, tr := range tracers {
		tn.Eventually(t, tn.Wait, fmt.Sprintf("m%d's mesh", i), func() bool { return tr.Mesh(gossip.TopicName("one-hop")) >= dlo })
	}

	for k := range 3 {
		cfg := tn.Config(fmt.Sprintf("newcomer-%d", k))
		cfg.Room = prod
		n := tn.Loopback(t, cfg)
		rm := tn.Join(t, n, "one-hop")
		start := time.Now()
		tn.Connect(t, n.Host(), repos[k].Host())
		if !tn.Within(deadline, func() bool { return allCursors(rm, rooms) }) {
			var missing []string
			for i, o := range rooms {
				if rm.State(o.Self().Peer) == nil {
					missing = append(missing, fmt.Sprintf("m%d", i))
				}
			}
			var know []string
			for i, o := range rooms {
				if tn.CountMember(o, tn.Peer(n)) == 1 {
					know = append(know, fmt.Sprintf("m%d", i))
				}
			}
			t.Fatalf("newcomer %d, connected to m%d only, still misses the presence of %v after %v (members that list the newcomer: %v)",
				k, k, missing, deadline, know)
		}
		t.Logf("newcomer %d, connected to m%d only: all seen in %v", k, k, time.Since(start).Round(10*time.Microsecond))
		// The members it is not connected to came in m_k's fetch reply, as
		// their own signed messages (it may also get some of their answers
		// to its hello, which is why this is at least one, not exactly 9).
		if st := n.Stats(); st.RelayAccepted == 0 || st.RelayInvalid != 0 {
			t.Errorf("newcomer %d: RelayAccepted %d, RelayInvalid %d; want > 0 and 0", k, st.RelayAccepted, st.RelayInvalid)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
