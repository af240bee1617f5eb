package rooms_test

import (
	"fmt"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
	tn "github.com/convene-p2p/convene/test/internal/testnet"
)

// Four members on mocknet, A and B on one side, C and D on the other.
// The network is cut between the sides (UnlinkPeers + DisconnectPeers):
// each side drops the other side's members with reason timeout. During the
// partition C leaves (its goodbye reaches D only) and D changes its
// presence. After the heal (LinkPeers + ConnectPeers) A and B see D again
// with its new presence, and D sees A and B again; C, which said goodbye,
// never comes back at A, B or D, although it still lingers on the topic.
//
// mocknet has a race that makes a cut leaky: a connection is closed by
// resetting its streams and only then forgetting it, and GossipSub reopens
// a reset stream at once, so a stream opened in between outlives the
// connection and keeps carrying messages across the cut. cutPartition
// therefore keeps the closed connections and resets any stream still
// attached to them until none is left (a real network has no such
// streams). A pubsub tracer on every host then checks that no outbound
// GossipSub stream crosses the cut; if one still does, the attempt is
// abandoned and the scenario runs again on a fresh mocknet, at most three
// times.
func TestPartitionEachSideExpiresTheOtherThenHealsAndWhoLeftStaysGone(t *testing.T) {
	for attempt := 1; attempt <= 3; attempt++ {
		leaky := false
		ok := t.Run(fmt.Sprintf("attempt-%d", attempt), func(t *testing.T) { partitionScenario(t, &leaky) })
		if !ok || !leaky {
			return
		}
		t.Logf("attempt %d: the mocknet cut leaked (a GossipSub stream survived DisconnectPeers); retrying", attempt)
	}
	t.Fatal("no leak-free mocknet partition in 3 attempts")
}

// partitionScenario runs the scenario; if the cut leaks it sets *leaky and
// skips (the attempt is abandoned, not failed).
func partitionScenario(t *testing.T, leaky *bool) {
	const roomID = "split"
	mn := tn.Mocknet(t)
	names := []string{"A", "B", "C", "D"}
	hosts := make([]host.Host, 4)
	tracers := make([]*tn.Tracer, 4)
	repos := make([]*repo.Repo, 4)
	rooms := make([]*room.Room, 4)
	for i := range names {
		hosts[i] = tn.MockHost(t, mn)
	}
	for i, name := range names {
		cfg := tn.Config(name)
		tracers[i] = &tn.Tracer{}
		cfg.Gossip.Options = []pubsub.Option{pubsub.WithRawTracer(tracers[i])}
		repos[i] = tn.OnHost(t, hosts[i], cfg)
		rc := room.LocalConfig()
		if name == "C" {
			rc.Linger = time.Minute // C stays on the topic after its Leave
		}
		rm, err := repos[i].JoinRoom(t.Context(), roomID, rc)
		if err != nil {
			t.Fatal(err)
		}
		rooms[i] = rm
	}
	tn.ConnectAll(t, hosts...)
	peers := make([]room.PeerID, 4)
	for i, r := range repos {
		peers[i] = tn.Peer(r)
	}
	for i, rm := range rooms {
		if err := rm.SetJSON("where", "before"); err != nil {
			t.Fatal(err)
		}
		tn.Eventually(t, tn.Wait, names[i]+" lists all four", func() bool { return tn.HasMembers(rm, peers...) })
	}
	recs := make([]*tn.Recorder[room.Event], 4)
	for i, rm := range rooms {
		recs[i] = tn.RecordRoom(t, rm)
	}
	const a, b, c, d = 0, 1, 2, 3
	sides := [][2]int{{a, c}, {a, d}, {b, c}, {b, d}}

	cut := time.Now()
	cutPartition(t, mn, hosts, sides)
	// Every outbound GossipSub stream across the cut is reported closed
	// within moments; one that stays open is mocknet's leak.
	if !tn.Within(time.Second, func() bool { return crossStreams(hosts, tracers, sides) == 0 }) {
		*leaky = true
		t.Skipf("mocknet leak: %d GossipSub streams across the cut outlived their connections", crossStreams(hosts, tracers, sides))
	}

	var expiry []time.Duration
	for _, s := range sides {
		for _, pair := range [][2]int{{s[0], s[1]}, {s[1], s[0]}} {
			ev := recs[pair[0]].WaitFor(t, room.LocalConfig().Timeout+tn.Wait,
				fmt.Sprintf("%s drops %s", names[pair[0]], names[pair[1]]), tn.MemberLeft(peers[pair[1]]))
			if ev.Ev.Reason != room.ReasonTimeout {
				t.Errorf("%s dropped %s across the partition with reason %v, want timeout", names[pair[0]], names[pair[1]], ev.Ev.Reason)
			}
			expiry = append(expiry, ev.At.Sub(cut))
		}
	}
	t.Logf("partition: each side dropped the other (reason timeout) after %s", tn.Durations(expiry))
	if !tn.HasMembers(rooms[a], peers[a], peers[b]) || !tn.HasMembers(rooms[d], peers[c], peers[d]) {
		t.Fatalf("during the partition A lists %d members and D lists %d, want 2 each", len(rooms[a].Members()), len(rooms[d].Members()))
	}

	// During the partition: C says goodbye (heard by D only), D moves.
	if err := repos[c].LeaveRoom(t.Context(), roomID); err != nil {
		t.Fatal(err)
	}
	left := recs[d].WaitFor(t, tn.Wait, "D sees C leave", tn.MemberLeft(peers[c]))
	if left.Ev.Reason != room.ReasonLeft {
		t.Errorf("D saw C's goodbye with reason %v, want left", left.Ev.Reason)
	}
	if err := rooms[d].SetJSON("where", "during"); err != nil {
		t.Fatal(err)
	}

	heal := time.Now()
	for _, s := range sides {
		if _, err := mn.LinkPeers(hosts[s[0]].ID(), hosts[s[1]].ID()); err != nil {
			t.Fatal(err)
		}
		if _, err := mn.ConnectPeers(hosts[s[0]].ID(), hosts[s[1]].ID()); err != nil {
			t.Fatal(err)
		}
	}
	where := func(rm *room.Room, p room.PeerID) string {
		var s string
		_, _ = rm.GetJSON(p, "where", &s)
		return s
	}
	for _, i := range []int{a, b} {
		tn.Eventually(t, tn.Wait, names[i]+" sees D again, with its new presence", func() bool {
			return tn.HasMembers(rooms[i], peers[a], peers[b], peers[d]) && where(rooms[i], peers[d]) == "during"
		})
	}
	tn.Eventually(t, tn.Wait, "D sees A and B again", func() bool { return tn.HasMembers(rooms[d], peers[a], peers[b], peers[d]) })
	t.Logf("heal: A, B and D see each other again after %v", time.Since(heal).Round(10*time.Microsecond))

	// C must not come back: watch for two heartbeat intervals.
	tn.Never(t, 2*room.LocalConfig().HeartbeatInterval, "C, who left during the partition, came back", func() bool {
		return tn.CountMember(rooms[a], peers[c]) > 0 || tn.CountMember(rooms[b], peers[c]) > 0 || tn.CountMember(rooms[d], peers[c]) > 0
	})
	for _, i := range []int{a, b, d} {
		for _, s := range recs[i].Events() {
			if s.At.After(heal) && s.Ev.Type == room.MemberJoined && s.Ev.Member.Peer == peers[c] {
				t.Errorf("%s readmitted C %v after the heal", names[i], s.At.Sub(heal))
			}
		}
	}
	if rooms[c].Status() != room.Left {
		t.Errorf("C's room is %v, want left (lingering)", rooms[c].Status())
	}
}

// cutPartition unlinks every pair in sides, closes their connections from
// both ends, and resets the streams mocknet left on the closed connections.
func cutPartition(t *testing.T, mn mocknet.Mocknet, hosts []host.Host, sides [][2]int) {
	t.Helper()
	for _, s := range sides {
		mustOK(t, mn.UnlinkPeers(hosts[s[0]].ID(), hosts[s[1]].ID()))
	}
	var closed []network.Conn
	for _, s := range sides {
		closed = append(closed, hosts[s[0]].Network().ConnsToPeer(hosts[s[1]].ID())...)
		closed = append(closed, hosts[s[1]].Network().ConnsToPeer(hosts[s[0]].ID())...)
		mustOK(t, mn.DisconnectPeers(hosts[s[0]].ID(), hosts[s[1]].ID()))
		mustOK(t, mn.DisconnectPeers(hosts[s[1]].ID(), hosts[s[0]].ID()))
	}
	tn.Eventually(t, tn.Wait, "no stream left on the closed connections", func() bool {
		n := 0
		for _, c := range closed {
			for _, st := range c.GetStreams() {
				_ = st.Reset()
				n++
			}
		}
		return n == 0
	})
}

// crossStreams counts open outbound GossipSub streams across the cut.
func crossStreams(hosts []host.Host, tracers []*tn.Tracer, sides [][2]int) int {
	n := 0
	for _, s := range sides {
		n += tracers[s[0]].OutboundStreams(hosts[s[1]].ID()) + tracers[s[1]].OutboundStreams(hosts[s[0]].ID())
	}
	return n
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
