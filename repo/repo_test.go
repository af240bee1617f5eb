package repo_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/convene-p2p/convene/p2p"
	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const wait = 15 * time.Second

func newRepo(t *testing.T, mod func(*repo.Config)) *repo.Repo {
	t.Helper()
	cfg := repo.LocalConfig()
	if mod != nil {
		mod(&cfg)
	}
	r, err := repo.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("repo.New: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func join(t *testing.T, r *repo.Repo, id string) *room.Room {
	t.Helper()
	rm, err := r.JoinRoom(context.Background(), id, room.Config{})
	if err != nil {
		t.Fatalf("JoinRoom(%q): %v", id, err)
	}
	return rm
}

// nextEvent returns the next Repo event, failing after wait.
func nextEvent(t *testing.T, w *repo.Watcher) repo.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ev, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("watcher: %v", err)
	}
	return ev
}

func TestEventTypeStringsAreTheSeedNames(t *testing.T) {
	for typ, want := range map[repo.EventType]string{
		repo.RoomCreated:    "room-created",
		repo.RoomDestroyed:  "room-destroyed",
		repo.MemberJoined:   "room-member-joined",
		repo.MemberLeft:     "room-member-left",
		repo.MemberUpdated:  "room-member-updated",
		repo.Lagged:         "lagged",
		repo.EventType(200): "unknown",
	} {
		if got := typ.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", typ, got, want)
		}
	}
}

func TestPeerIDStringIsTheLibp2pPeerID(t *testing.T) {
	r := newRepo(t, nil)
	if got := r.Self().Peer.String(); got != r.ID().String() {
		t.Errorf("Self().Peer.String() = %q, want %q", got, r.ID())
	}
	if got := fmt.Sprint(r.Self().Peer); got != r.ID().String() {
		t.Errorf("fmt.Sprint(Self().Peer) = %q, want %q", got, r.ID())
	}
	if got := repo.PeerString(r.Self().Peer); got != r.ID().String() {
		t.Errorf("PeerString(self) = %q, want %q", got, r.ID())
	}
}

func TestNewRejectsNegativeEventBuffer(t *testing.T) {
	cfg := repo.LocalConfig()
	cfg.EventBuffer = -1
	if r, err := repo.New(context.Background(), cfg); err == nil {
		_ = r.Close()
		t.Fatal("New accepted EventBuffer -1")
	}
}

func TestSelfCarriesNameAndMetaAndIsACopy(t *testing.T) {
	r := newRepo(t, func(c *repo.Config) {
		c.Name = "Alice"
		c.Meta = map[string]string{"color": "blue"}
	})
	self := r.Self()
	if self.Name != "Alice" || self.Meta["color"] != "blue" || self.Peer != room.PeerID(r.ID()) {
		t.Fatalf("Self() = %+v", self)
	}
	self.Meta["color"] = "red"
	if r.Self().Meta["color"] != "blue" {
		t.Error("Self().Meta aliases the Repo's")
	}
	if len(r.Addrs()) == 0 {
		t.Error("no listen address")
	}
}

func TestJoinRoomRejectsInvalidIDs(t *testing.T) {
	r := newRepo(t, nil)
	for _, id := range []string{"", "a/b", "tab\there", string(make([]byte, room.MaxIDLen+1))} {
		if _, err := r.JoinRoom(context.Background(), id, room.Config{}); !errors.Is(err, room.ErrInvalidID) {
			t.Errorf("JoinRoom(%q) = %v, want ErrInvalidID", id, err)
		}
	}
	if len(r.Rooms()) != 0 {
		t.Errorf("Rooms() = %d after invalid joins", len(r.Rooms()))
	}
}

func TestJoinRoomWithInvalidConfigFailsAndLeavesNoTopicBehind(t *testing.T) {
	r := newRepo(t, nil)
	bad := room.Config{Timeout: time.Second, HeartbeatInterval: 2 * time.Second}
	if _, err := r.JoinRoom(context.Background(), "x", bad); err == nil {
		t.Fatal("JoinRoom accepted a heartbeat longer than the timeout")
	}
	join(t, r, "x") // the failed join did not leave the topic open
}

func TestJoinRoomTwiceReturnsTheSameRoomAndRoomsAreSorted(t *testing.T) {
	r := newRepo(t, nil)
	b := join(t, r, "b")
	a := join(t, r, "a")
	if again := join(t, r, "b"); again != b {
		t.Error("second JoinRoom returned another room")
	}
	rs := r.Rooms()
	if len(rs) != 2 || rs[0] != a || rs[1] != b {
		t.Errorf("Rooms() = %v, want [a b]", rs)
	}
	if got, ok := r.Room("a"); !ok || got != a {
		t.Error("Room(a) did not find it")
	}
	if _, ok := r.Room("c"); ok {
		t.Error("Room(c) found a room never joined")
	}
}

func TestLeaveRoomOfUnknownRoomIsErrUnknownRoom(t *testing.T) {
	r := newRepo(t, nil)
	if err := r.LeaveRoom(context.Background(), "nowhere"); !errors.Is(err, repo.ErrUnknownRoom) {
		t.Errorf("LeaveRoom = %v, want ErrUnknownRoom", err)
	}
}

// After Close every call that needs the Repo says ErrClosed, as documented;
// LeaveRoom used to say ErrUnknownRoom (Close forgets the rooms).
func TestLeaveRoomAfterCloseIsErrClosed(t *testing.T) {
	r := newRepo(t, nil)
	join(t, r, "a")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "never-joined"} {
		if err := r.LeaveRoom(context.Background(), id); !errors.Is(err, repo.ErrClosed) {
			t.Errorf("LeaveRoom(%q) after Close = %v, want ErrClosed", id, err)
		}
	}
	if _, err := r.JoinRoom(context.Background(), "a", room.Config{}); !errors.Is(err, repo.ErrClosed) {
		t.Errorf("JoinRoom after Close = %v, want ErrClosed", err)
	}
}

// Lifecycle on one node: created, left (lingering, still listed), destroyed
// after the linger, forgotten; joining again creates it anew.
func TestRoomLifecycleCreatedLingeringDestroyedCreatedAgain(t *testing.T) {
	r := newRepo(t, func(c *repo.Config) { c.Room.Linger = 100 * time.Millisecond })
	w := r.Watch()
	defer w.Close()
	rm := join(t, r, "life")
	if ev := nextEvent(t, w); ev.Type != repo.RoomCreated || ev.Room != "life" {
		t.Fatalf("first event %+v, want room-created life", ev)
	}
	if err := r.LeaveRoom(context.Background(), "life"); err != nil {
		t.Fatal(err)
	}
	if rm.Status() != room.Left || len(r.Rooms()) != 1 {
		t.Fatalf("after Leave: status %v, %d rooms; want left, 1", rm.Status(), len(r.Rooms()))
	}
	if err := r.LeaveRoom(context.Background(), "life"); !errors.Is(err, room.ErrNotJoined) {
		t.Errorf("second LeaveRoom = %v, want room.ErrNotJoined", err)
	}
	if ev := nextEvent(t, w); ev.Type != repo.RoomDestroyed || ev.Room != "life" {
		t.Fatalf("event %+v, want room-destroyed life", ev)
	}
	if len(r.Rooms()) != 0 {
		t.Fatal("destroyed room still listed")
	}
	again := join(t, r, "life")
	if again == rm || again.Status() != room.Joined {
		t.Fatalf("JoinRoom after destroy returned the old room or a room %v", again.Status())
	}
	if ev := nextEvent(t, w); ev.Type != repo.RoomCreated {
		t.Fatalf("event %+v, want room-created", ev)
	}
}

// JoinRoom at the very moment the linger ends (a negative Linger destroys
// the room as soon as the goodbye is out) never returns a dead room, and
// the events stay well-formed: created, destroyed, created, ...
func TestJoinRoomRacingTheEndOfTheLingerReturnsALiveRoom(t *testing.T) {
	r := newRepo(t, func(c *repo.Config) { c.Room.Linger = -1 })
	w := r.Watch()
	defer w.Close()
	const rounds = 20
	for i := range rounds {
		rm := join(t, r, "race")
		if st := rm.Status(); st != room.Joined {
			t.Fatalf("round %d: JoinRoom returned a room %v", i, st)
		}
		if err := rm.Leave(context.Background()); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	open := false
	for n := 0; n < 2*rounds; n++ {
		ev := nextEvent(t, w)
		switch ev.Type {
		case repo.RoomCreated:
			if open {
				t.Fatalf("event %d: room-created while open", n)
			}
			open = true
		case repo.RoomDestroyed:
			if !open {
				t.Fatalf("event %d: room-destroyed while not open", n)
			}
			open = false
		default:
			t.Fatalf("event %d: unexpected %v", n, ev.Type)
		}
	}
}

// A watcher that is not read loses events beyond its buffer and is told
// how many through one Lagged event; the Repo does not wait for it.
func TestSlowWatcherLagsWithoutBlocking(t *testing.T) {
	r := newRepo(t, func(c *repo.Config) { c.EventBuffer = 2 })
	w := r.Watch()
	defer w.Close()
	for i := range 5 {
		join(t, r, fmt.Sprintf("room-%d", i)) // 5 room-created, never blocked
	}
	for i := range 2 {
		if ev := nextEvent(t, w); ev.Type != repo.RoomCreated || ev.Room != fmt.Sprintf("room-%d", i) {
			t.Fatalf("event %d = %+v", i, ev)
		}
	}
	if ev := nextEvent(t, w); ev.Type != repo.Lagged || ev.Dropped != 3 {
		t.Fatalf("after the buffer: %+v, want lagged with 3 dropped", ev)
	}
	join(t, r, "after")
	if ev := nextEvent(t, w); ev.Type != repo.RoomCreated || ev.Room != "after" {
		t.Fatalf("after the lag: %+v", ev)
	}
}

// Close leaves and destroys every room (RoomDestroyed for each), ends
// every watcher, is idempotent, and makes later calls fail with ErrClosed.
func TestCloseDestroysRoomsEndsWatchersAndIsIdempotent(t *testing.T) {
	r := newRepo(t, nil)
	a, b := join(t, r, "a"), join(t, r, "b")
	w := r.Watch()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	destroyed := map[string]bool{}
	for {
		ev, err := w.Next(context.Background())
		if errors.Is(err, repo.ErrWatcherClosed) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == repo.RoomDestroyed {
			destroyed[ev.Room] = true
		}
	}
	if !destroyed["a"] || !destroyed["b"] {
		t.Errorf("destroyed %v, want a and b", destroyed)
	}
	if a.Status() != room.Closed || b.Status() != room.Closed {
		t.Errorf("rooms after Close: %v, %v", a.Status(), b.Status())
	}
	if _, err := r.JoinRoom(context.Background(), "c", room.Config{}); !errors.Is(err, repo.ErrClosed) {
		t.Errorf("JoinRoom after Close = %v, want ErrClosed", err)
	}
	if _, err := r.Watch().Next(context.Background()); !errors.Is(err, repo.ErrWatcherClosed) {
		t.Errorf("Watch after Close: Next = %v, want ErrWatcherClosed", err)
	}
}

// A Repo on the application's own libp2p host does not close it: after
// Close the host still works, and another Repo can run on it.
func TestRepoOnACallersHostLeavesTheHostRunning(t *testing.T) {
	h, err := p2p.New(context.Background(), p2p.LocalConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	cfg := repo.LocalConfig()
	cfg.Libp2pHost = h.Host()
	r1, err := repo.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r1.ID() != h.ID() || r1.Host() != h.Host() {
		t.Fatal("the Repo does not run on the given host")
	}
	join(t, r1, "shared")
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}

	other := newRepo(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := h.Host().Connect(ctx, peer.AddrInfo{ID: other.ID(), Addrs: other.Host().Addrs()}); err != nil {
		t.Fatalf("the caller's host no longer works after Repo.Close: %v", err)
	}
	r2, err := repo.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	join(t, r2, "shared")
}

// Members a room admits before anything could watch it are reported as
// MemberJoined right after RoomCreated, and remote members only: the local
// peer's own joins and leaves are not member events.
func TestRepoMemberEventsCoverRemoteMembersOnly(t *testing.T) {
	a, b := newRepo(t, func(c *repo.Config) { c.Name = "A" }), newRepo(t, func(c *repo.Config) { c.Name = "B" })
	wa := a.Watch()
	defer wa.Close()
	join(t, a, "m")
	join(t, b, "m")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := a.Connect(ctx, b.Addrs()[0].String()); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, wa); ev.Type != repo.RoomCreated {
		t.Fatalf("%+v", ev)
	}
	if ev := nextEvent(t, wa); ev.Type != repo.MemberJoined || ev.Member.Name != "B" || ev.Room != "m" {
		t.Fatalf("%+v, want member-joined B", ev)
	}
	if err := a.LeaveRoom(context.Background(), "m"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.JoinRoom(context.Background(), "m", room.Config{}); err != nil { // rejoin in the linger
		t.Fatal(err)
	}
	if err := b.LeaveRoom(context.Background(), "m"); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, wa)
	if ev.Type != repo.MemberLeft || ev.Member.Name != "B" || ev.Reason != room.ReasonLeft {
		t.Fatalf("%+v, want member-left B (left): A's own leave and rejoin are not member events", ev)
	}
}

func TestConnectRejectsBadAddresses(t *testing.T) {
	r := newRepo(t, nil)
	for _, addr := range []string{"not a multiaddr", "/ip4/127.0.0.1/tcp/1"} {
		if err := r.Connect(context.Background(), addr); err == nil {
			t.Errorf("Connect(%q) succeeded", addr)
		}
	}
}

func TestStatsCountOwnPublishes(t *testing.T) {
	r := newRepo(t, nil)
	rm := join(t, r, "s")
	before := r.Stats().Published
	if err := rm.Broadcast(context.Background(), []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if r.Stats().Published <= before {
		t.Errorf("Published did not grow: %d -> %d", before, r.Stats().Published)
	}
}
