package room

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/convene-p2p/convene/room/roomnet"
)

// Shell tests: real Rooms over the in-memory bus, in a synctest bubble so
// that every timer runs on virtual time and nothing waits on the wall
// clock.

func shellConfig() Config {
	cfg := LocalConfig()
	cfg.Logger = discardLogger()
	return cfg
}

func newRoom(t *testing.T, b *bus, peer string, cfg Config) *Room {
	t.Helper()
	r, err := New("lobby", Identity{Peer: PeerID(peer), Name: "name-" + peer}, cfg, b.join(PeerID(peer)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// mustSet sets key to value in r's own presence, or fails the test.
func mustSet(t *testing.T, r *Room, key, value string) {
	t.Helper()
	if err := r.Set(key, []byte(value)); err != nil {
		t.Fatal(err)
	}
}

// next waits (on virtual time) for the next event of w that matches.
func next(t *testing.T, w *Watcher, within time.Duration, match func(Event) bool) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("no matching event within %v: %v", within, err)
		}
		if match(ev) {
			return ev
		}
	}
}

func isType(tp EventType, peer string) func(Event) bool {
	return func(ev Event) bool {
		if ev.Type != tp {
			return false
		}
		switch tp {
		case PresenceChanged:
			return peer == "" || string(ev.Change.Peer) == peer
		case RoomDestroyed, Lagged:
			return true
		}
		return peer == "" || string(ev.Member.Peer) == peer
	}
}

func memberPeers(r *Room) []string {
	var out []string
	for _, m := range r.Members() {
		out = append(out, string(m.Peer))
	}
	return out
}

func TestRoomTwoPeersSeeEachOther(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		a := newRoom(t, b, "a", shellConfig())
		if err := a.SetJSON("cursor", map[string]int{"x": 1, "y": 2}); err != nil {
			t.Fatal(err)
		}
		c := newRoom(t, b, "c", shellConfig())
		mustSet(t, c, "status", "here")
		synctest.Wait()
		eq(t, "a's members", memberPeers(a), []string{"a", "c"})
		eq(t, "c's members", memberPeers(c), []string{"a", "c"})
		if ms := c.Members(); ms[0].Name != "name-a" || ms[1].Name != "name-c" {
			t.Errorf("names: %+v", ms)
		}
		var cur struct{ X, Y int }
		if ok, err := c.GetJSON("a", "cursor", &cur); !ok || err != nil || cur.X != 1 || cur.Y != 2 {
			t.Errorf("c sees a's cursor = %+v %v %v", cur, ok, err)
		}
		if v, ok := a.Get("c", "status"); !ok || string(v) != "here" {
			t.Errorf("a sees c's status = %q %v", v, ok)
		}
		// Read-your-writes, and updates flow.
		if err := a.Set("cursor", []byte(`{"x":3}`)); err != nil {
			t.Fatal(err)
		}
		if v, _ := a.Get("a", "cursor"); string(v) != `{"x":3}` {
			t.Errorf("a's own cursor = %s", v)
		}
		time.Sleep(shellConfig().PublishInterval) // the coalescing window (virtual time)
		synctest.Wait()
		if v, _ := c.Get("a", "cursor"); string(v) != `{"x":3}` {
			t.Errorf("c sees a's cursor = %s", v)
		}
		states := c.States()
		if len(states) != 2 || string(states["c"]["status"]) != "here" {
			t.Errorf("States() = %v", states)
		}
		if st := c.State("nobody"); st != nil {
			t.Errorf("State of a stranger = %v", st)
		}
	})
}

func TestRoomJoinSnapshotWithoutAnyPublish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		b.setDropPublish(true) // every hello, heartbeat and delta is lost
		var rooms []*Room
		for i := range 5 {
			r := newRoom(t, b, fmt.Sprint("p", i), shellConfig())
			if err := r.Set("n", []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
			rooms = append(rooms, r)
		}
		start := time.Now()
		late := newRoom(t, b, "late", shellConfig())
		w := late.Watch()
		defer w.Close()
		synctest.Wait()
		if took := time.Since(start); took > 0 {
			t.Errorf("join snapshot took %v of virtual time", took)
		}
		if got := len(late.Members()); got != 6 {
			t.Fatalf("newcomer sees %d members, want 6", got)
		}
		for i := range 5 {
			if v, ok := late.Get(PeerID(fmt.Sprint("p", i)), "n"); !ok || string(v) != fmt.Sprint(i) {
				t.Errorf("newcomer sees p%d's n = %q %v", i, v, ok)
			}
		}
		// And the members learned about the newcomer the same way (a fetch
		// that raced with the newcomer's start is retried after 100ms).
		time.Sleep(fetchRetryDelay)
		synctest.Wait()
		for _, r := range rooms {
			if !slices.Contains(memberPeers(r), "late") {
				t.Errorf("%s does not see the newcomer", r.Self().Peer)
			}
		}
	})
}

func TestRoomWatcherOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		a := newRoom(t, b, "a", shellConfig())
		w := a.Watch()
		defer w.Close()
		c := newRoom(t, b, "c", shellConfig())
		for i := range 3 {
			if err := c.Set("k", []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
			time.Sleep(shellConfig().PublishInterval) // virtual: one delta each
		}
		if err := c.Leave(context.Background()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		var got []string
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		for len(got) < 6 {
			ev, err := w.Next(ctx)
			if err != nil {
				t.Fatalf("after %q: %v", got, err)
			}
			got = append(got, describe([]Event{ev})...)
		}
		eq(t, "events", got, []string{
			"member-joined c(name-c)",
			"presence-changed c remote +k",
			"presence-changed c remote ~k",
			"presence-changed c remote ~k",
			"presence-changed c leave -k gone",
			"member-left c left",
		})
	})
}

func TestRoomLaggedOnSlowWatcher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		cfg := shellConfig()
		cfg.WatchBuffer = 4
		a := newRoom(t, b, "a", cfg)
		slow := a.Watch()
		defer slow.Close()
		fast := a.Watch()
		defer fast.Close()
		for i := range 20 {
			if err := a.Set(fmt.Sprint("k", i%10), []byte("v")); err != nil {
				t.Fatal(err)
			}
			if i < 10 { // the fast watcher keeps up
				if _, err := fast.Next(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
		}
		ctx := context.Background()
		var got []string
		for range 5 {
			ev, err := slow.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, describe([]Event{ev})...)
		}
		eq(t, "slow watcher", got, []string{
			"presence-changed a local +k0",
			"presence-changed a local +k1",
			"presence-changed a local +k2",
			"presence-changed a local +k3",
			"lagged 16",
		})
		// The fast watcher read 10 in time: 4 more are buffered, then the
		// gap of 6.
		for range 4 {
			ev, err := fast.Next(ctx)
			if err != nil || ev.Type != PresenceChanged {
				t.Fatalf("fast watcher: %+v %v", ev, err)
			}
		}
		if ev, _ := fast.Next(ctx); ev.Type != Lagged || ev.Dropped != 6 {
			t.Errorf("fast watcher after its buffer: %+v", ev)
		}
		if st := a.Stats(); st.WatchDropped != 16+6 || st.WatchLags != 2 {
			t.Errorf("Stats: WatchDropped %d, WatchLags %d; want 22 and 2", st.WatchDropped, st.WatchLags)
		}
		// After the gap, events flow again.
		mustSet(t, a, "after", "v")
		for _, w := range []*Watcher{slow, fast} {
			ev, err := w.Next(ctx)
			if err != nil || ev.Type != PresenceChanged || ev.Change.Added[0] != "after" {
				t.Errorf("after the gap: %+v %v", ev, err)
			}
		}
	})
}

func TestRoomCloseIsIdempotent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		a := newRoom(t, b, "a", shellConfig())
		w := a.Watch()
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		mustBeDestroyed(t, a, "Close")
		if ev, err := w.Next(context.Background()); err != nil || ev.Type != RoomDestroyed {
			t.Errorf("last event %+v %v", ev, err)
		}
		if _, err := w.Next(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("Next after the end: %v", err)
		}
		for name, err := range map[string]error{
			"Set":       a.Set("k", nil),
			"Delete":    a.Delete("k"),
			"Leave":     a.Leave(context.Background()),
			"Rejoin":    a.Rejoin(context.Background()),
			"Broadcast": a.Broadcast(context.Background(), []byte("x")),
		} {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close: %v", name, err)
			}
		}
		if _, err := a.Watch().Next(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("Watch after Close: %v", err)
		}
		if len(a.Members()) != 0 || len(a.States()) != 0 {
			t.Errorf("members %v states %v after Close", a.Members(), a.States())
		}
		// Concurrent Close calls all return.
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() { _ = a.Close() })
		}
		wg.Wait()
	})
}

func TestRoomLeaveThenDoneAfterLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		cfg := shellConfig()
		a := newRoom(t, b, "a", cfg)
		c := newRoom(t, b, "c", cfg)
		mustSet(t, a, "k", "v")
		synctest.Wait()
		wc := c.Watch()
		defer wc.Close()
		wa := a.Watch()
		defer wa.Close()

		start := time.Now()
		if err := a.Leave(context.Background()); err != nil {
			t.Fatal(err)
		}
		if a.Status() != Left {
			t.Errorf("status after Leave = %v", a.Status())
		}
		ev := next(t, wc, time.Millisecond, isType(MemberLeft, "a"))
		if ev.Reason != ReasonLeft {
			t.Errorf("reason %v", ev.Reason)
		}
		if st := c.Stats(); st.LeftGoodbye != 1 || st.LeftTimeout != 0 {
			t.Errorf("c's Stats: LeftGoodbye %d, LeftTimeout %d; want 1 and 0", st.LeftGoodbye, st.LeftTimeout)
		}
		if _, ok := c.Get("a", "k"); ok {
			t.Error("a's presence survived its goodbye")
		}
		if err := a.Set("k", nil); !errors.Is(err, ErrNotJoined) {
			t.Errorf("Set while left: %v", err)
		}
		if err := a.Leave(context.Background()); !errors.Is(err, ErrNotJoined) {
			t.Errorf("second Leave: %v", err)
		}
		eq(t, "a's members while lingering", memberPeers(a), []string{"c"})
		// Still receiving while lingering.
		mustSet(t, c, "during", "linger")
		synctest.Wait()
		if v, _ := a.Get("c", "during"); string(v) != "linger" {
			t.Errorf("lingering room did not receive: %q", v)
		}
		<-a.Done()
		if took := time.Since(start); took < cfg.Linger || took > cfg.Linger+10*time.Millisecond {
			t.Errorf("destroyed after %v, want Linger %v", took, cfg.Linger)
		}
		next(t, wa, time.Millisecond, isType(RoomDestroyed, ""))
		if a.Status() != Closed {
			t.Errorf("status %v", a.Status())
		}
	})
}

func TestRoomRejoinDuringLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		cfg := shellConfig()
		a := newRoom(t, b, "a", cfg)
		c := newRoom(t, b, "c", cfg)
		synctest.Wait()
		wc := c.Watch()
		defer wc.Close()
		if err := a.Leave(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(cfg.Linger / 2)
		if err := a.Rejoin(context.Background()); err != nil {
			t.Fatal(err)
		}
		if a.Status() != Joined {
			t.Fatalf("status %v", a.Status())
		}
		mustSet(t, a, "back", "yes")
		next(t, wc, time.Millisecond, isType(MemberLeft, "a"))
		next(t, wc, time.Millisecond, isType(MemberJoined, "a"))
		time.Sleep(2 * cfg.Linger)
		select {
		case <-a.Done():
			t.Fatal("destroyed although rejoined")
		default:
		}
		if v, _ := c.Get("a", "back"); string(v) != "yes" {
			t.Errorf("c sees %q", v)
		}
		eq(t, "c's members", memberPeers(c), []string{"a", "c"})
	})
}

func TestRoomKilledPeerGoneWithinASecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		cfg := DefaultConfig() // Timeout 30s: only the probe can be this fast
		cfg.Logger = discardLogger()
		a := newRoom(t, b, "a", cfg)
		k := newRoom(t, b, "k", cfg)
		synctest.Wait()
		w := a.Watch()
		defer w.Close()
		start := time.Now()
		_ = k.Close() // no goodbye; its connections close
		ev := next(t, w, time.Second, isType(MemberLeft, "k"))
		if ev.Reason != ReasonTimeout {
			t.Errorf("reason %v", ev.Reason)
		}
		if took := time.Since(start); took >= time.Second {
			t.Errorf("gone after %v", took)
		}
		st := a.Stats()
		if st.Joined != 1 || st.LeftTimeout != 1 || st.LeftGoodbye != 0 || st.ProbesFailed != 1 {
			t.Errorf("Stats: Joined %d, LeftTimeout %d, LeftGoodbye %d, ProbesFailed %d; want 1, 1, 0, 1", st.Joined, st.LeftTimeout, st.LeftGoodbye, st.ProbesFailed)
		}
		if st.Fetches < 2 || st.FetchesFailed < 1 { // k's join snapshot, then the failed probe
			t.Errorf("Stats: Fetches %d, FetchesFailed %d; want >= 2 and >= 1", st.Fetches, st.FetchesFailed)
		}
	})
}

func TestRoomSilentPeerTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		cfg := shellConfig()
		a := newRoom(t, b, "a", cfg)
		s := newRoom(t, b, "s", cfg)
		synctest.Wait()
		w := a.Watch()
		defer w.Close()
		// s can still be probed but a hears nothing from it: publishes are
		// lost and no PeerDown arrives.
		b.setDropPublish(true)
		start := time.Now()
		ev := next(t, w, cfg.Timeout+cfg.HeartbeatInterval, isType(MemberLeft, "s"))
		if ev.Reason != ReasonTimeout {
			t.Errorf("reason %v", ev.Reason)
		}
		if took := time.Since(start); took > cfg.Timeout {
			t.Errorf("timed out after %v, want within Timeout %v of the last heartbeat", took, cfg.Timeout)
		}
		_ = s
	})
}

func TestRoomPartitionHeals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		cfg := shellConfig()
		a := newRoom(t, b, "a", cfg)
		c := newRoom(t, b, "c", cfg)
		mustSet(t, c, "k", "v")
		synctest.Wait()
		w := a.Watch()
		defer w.Close()
		b.setCut("a", "c", true)
		next(t, w, time.Second, isType(MemberLeft, "c"))
		time.Sleep(2 * cfg.Timeout)
		b.setCut("a", "c", false)
		next(t, w, 10*time.Millisecond, isType(MemberJoined, "c"))
		synctest.Wait()
		if v, ok := a.Get("c", "k"); !ok || string(v) != "v" {
			t.Errorf("after the heal a sees c's k = %q %v", v, ok)
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			defer cancel()
			for {
				ev, err := w.Next(ctx)
				if err != nil {
					break
				}
				t.Log(describe([]Event{ev}))
			}
			t.Log(c.State("c"))
		}
	})
}

func TestRoomRestartWithSameKeyIsOneMember(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		cfg := shellConfig()
		a := newRoom(t, b, "a", cfg)
		old := newRoom(t, b, "r", cfg)
		for i := range 100 {
			if err := old.Set("x", []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		w := a.Watch()
		defer w.Close()
		// The same peer starts again (the old process is gone, its
		// connections not noticed yet).
		r2, err := New("lobby", Identity{Peer: "r", Name: "name-r"}, cfg, b.join("r"))
		if err != nil {
			t.Fatal(err)
		}
		defer r2.Close()
		mustSet(t, r2, "y", "new")
		synctest.Wait()
		_ = old.Close() // the old process' network ends without a PeerDown
		time.Sleep(2 * cfg.Timeout)
		eq(t, "members", memberPeers(a), []string{"a", "r"})
		st := a.State("r")
		if len(st) != 1 || string(st["y"]) != "new" {
			t.Errorf("state of r = %q, want only y=new", st)
		}
		// Never a left/joined pair for r.
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		for {
			ev, err := w.Next(ctx)
			if err != nil {
				break
			}
			if (ev.Type == MemberLeft || ev.Type == MemberJoined) && ev.Member.Peer == "r" {
				t.Errorf("restart produced %v", ev.Type)
			}
		}
	})
}

func TestRoomBroadcast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		a := newRoom(t, b, "a", shellConfig())
		c := newRoom(t, b, "c", shellConfig())
		synctest.Wait()
		w := c.Watch()
		defer w.Close()
		if err := a.Broadcast(context.Background(), []byte("ping")); err != nil {
			t.Fatal(err)
		}
		ev := next(t, w, time.Millisecond, isType(Broadcast, "a"))
		if string(ev.Payload) != "ping" || ev.Member.Name != "name-a" {
			t.Errorf("broadcast %+v", ev)
		}
		if err := a.Leave(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := a.Broadcast(context.Background(), []byte("x")); !errors.Is(err, ErrNotJoined) {
			t.Errorf("broadcast while left: %v", err)
		}
	})
}

func TestRoomConcurrentUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		a := newRoom(t, b, "a", shellConfig())
		c := newRoom(t, b, "c", shellConfig())
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 200 {
					_ = a.Set(fmt.Sprint("k", g), []byte(fmt.Sprint(i)))
					_ = c.States()
					_, _ = c.Get("a", "k0")
					_ = a.Members()
				}
			})
		}
		wg.Wait()
		time.Sleep(shellConfig().PublishInterval)
		synctest.Wait()
		for g := range 4 {
			if v, _ := c.Get("a", fmt.Sprint("k", g)); string(v) != "199" {
				t.Errorf("c sees k%d = %q, want the last value", g, v)
			}
		}
	})
}

func TestRoomCoalescesPublishes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		cfg := shellConfig()
		net := b.join("a")
		a, err := New("lobby", Identity{Peer: "a"}, cfg, net)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		c := newRoom(t, b, "c", cfg)
		synctest.Wait()
		before := len(net.sent())
		for i := range 1000 {
			if err := a.Set("cursor", []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(cfg.PublishInterval)
		synctest.Wait()
		deltas := 0
		for _, k := range net.sent()[before:] {
			if k == roomnet.KindDelta {
				deltas++
			}
		}
		if deltas < 1 || deltas > 3 {
			t.Errorf("%d deltas for 1000 writes", deltas)
		}
		if v, _ := c.Get("a", "cursor"); string(v) != "999" {
			t.Errorf("c sees %q, want 999", v)
		}
	})
}

func TestNewRejectsBadInput(t *testing.T) {
	b := newBus()
	for name, tc := range map[string]struct {
		id   string
		self Identity
		cfg  Config
		net  roomnet.Network
	}{
		"bad id":    {"a/b", Identity{Peer: "a"}, Config{}, b.join("x1")},
		"no peer":   {"ok", Identity{}, Config{}, b.join("x2")},
		"nil net":   {"ok", Identity{Peer: "a"}, Config{}, nil},
		"bad times": {"ok", Identity{Peer: "a"}, Config{Timeout: time.Second, HeartbeatInterval: 2 * time.Second}, b.join("x3")},
	} {
		if r, err := New(tc.id, tc.self, tc.cfg, tc.net); err == nil {
			_ = r.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestRoomDestroyedWhenNetworkEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		net := b.join("a")
		a, err := New("lobby", Identity{Peer: "a"}, shellConfig(), net)
		if err != nil {
			t.Fatal(err)
		}
		w := a.Watch()
		_ = net.Close() // the network goes away under the room
		<-a.Done()
		if ev, err := w.Next(context.Background()); err != nil || ev.Type != RoomDestroyed {
			t.Errorf("event %+v %v", ev, err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("Close after the end: %v", err)
		}
	})
}

func TestRoomLeaveWithNegativeLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		cfg := shellConfig()
		cfg.Linger = -1
		net := b.join("a")
		a, err := New("lobby", Identity{Peer: "a"}, cfg, net)
		if err != nil {
			t.Fatal(err)
		}
		c := newRoom(t, b, "c", shellConfig())
		synctest.Wait()
		w := c.Watch()
		defer w.Close()
		start := time.Now()
		if err := a.Leave(context.Background()); err != nil {
			t.Fatal(err)
		}
		<-a.Done()
		if time.Since(start) != 0 {
			t.Errorf("destroyed after %v", time.Since(start))
		}
		if ev := next(t, w, time.Millisecond, isType(MemberLeft, "a")); ev.Reason != ReasonLeft {
			t.Errorf("the goodbye was not sent before the network closed: %+v", ev)
		}
		if k := net.sent(); k[len(k)-1] != roomnet.KindLeave {
			t.Errorf("last publish %v", k)
		}
	})
}

func TestWatcherCloseStopsDelivery(t *testing.T) {
	h := newHub("r", 4)
	w := h.watch()
	h.emit([]Event{{Type: Broadcast}})
	w.Close()
	w.Close()
	if _, err := w.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Close: %v", err)
	}
	h.emit([]Event{{Type: Broadcast}}) // no panic, no delivery
	h.close()
	h.close()
	if _, err := h.watch().Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("watch on a closed hub: %v", err)
	}
}

func TestWatcherNextHonoursContext(t *testing.T) {
	h := newHub("r", 4)
	w := h.watch()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Next with a cancelled context: %v", err)
	}
}

func TestRoomDestroyedIsNeverDropped(t *testing.T) {
	h := newHub("r", 2)
	w := h.watch()
	for range 10 {
		h.emit([]Event{{Type: Broadcast}})
	}
	h.close()
	var got []string
	for {
		ev, err := w.Next(context.Background())
		if err != nil {
			break
		}
		got = append(got, ev.Type.String())
	}
	eq(t, "events", got, []string{"broadcast", "broadcast", "lagged", "room-destroyed"})
}

// manualClock is a Clock that moves only when told to.
type manualClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []clockWaiter
}

type clockWaiter struct {
	at time.Time
	c  chan time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, clockWaiter{c.now.Add(d), ch})
	return ch
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.c <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
}

func TestRoomUsesItsClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := &manualClock{now: t0}
		b := newBus()
		cfg := shellConfig()
		cfg.Clock, cfg.Seed = clock, 7
		net := b.join("a")
		a, err := New("lobby", Identity{Peer: "a"}, cfg, net)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		// Hours of runtime time pass, none of the room's: no heartbeat.
		time.Sleep(time.Hour)
		synctest.Wait()
		eq(t, "before the clock moves", kindNames(net.sent()), []string{"hello"})
		clock.advance(cfg.HeartbeatInterval * 11 / 10)
		synctest.Wait()
		eq(t, "after one heartbeat interval", kindNames(net.sent()), []string{"hello", "heartbeat"})
	})
}

func kindNames(ks []roomnet.MessageKind) []string {
	var out []string
	for _, k := range ks {
		out = append(out, k.String())
	}
	return out
}

func TestRoomDeleteAndTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBus()
		a := newRoom(t, b, "a", shellConfig())
		c := newRoom(t, b, "c", shellConfig())
		if a.ID() != "lobby" || a.Self().Name != "name-a" {
			t.Errorf("ID %q Self %+v", a.ID(), a.Self())
		}
		if err := a.SetTTL("typing", []byte("yes"), 2*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := a.SetTTL("typing", []byte("yes"), 0); err == nil {
			t.Error("SetTTL with a zero ttl succeeded")
		}
		mustSet(t, a, "k", "v")
		time.Sleep(shellConfig().PublishInterval)
		synctest.Wait()
		if _, ok := c.Get("a", "typing"); !ok {
			t.Fatal("c does not see typing")
		}
		if err := a.Delete("k"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(shellConfig().PublishInterval)
		synctest.Wait()
		if _, ok := c.Get("a", "k"); ok {
			t.Error("c still sees a deleted key")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if _, ok := c.Get("a", "typing"); ok {
			t.Error("c still sees typing after its TTL")
		}
		if _, ok := a.Get("a", "typing"); ok {
			t.Error("a still sees its own typing after its TTL")
		}
		var v int
		mustSet(t, a, "bad", "{")
		if ok, err := a.GetJSON("a", "bad", &v); !ok || err == nil {
			t.Errorf("GetJSON of bad JSON: %v %v", ok, err)
		}
		if ok, err := a.GetJSON("a", "missing", &v); ok || err != nil {
			t.Errorf("GetJSON of a missing key: %v %v", ok, err)
		}
		if err := a.SetJSON("ch", make(chan int)); err == nil {
			t.Error("SetJSON of a channel succeeded")
		}
	})
}

// closeWatchNet is a fakeNet that, when the room closes it, records which
// events a watcher could already read: RoomDestroyed must not be among
// them.
type closeWatchNet struct {
	*fakeNet
	w *Watcher

	mu     sync.Mutex
	closes int
	before []string // events readable when Close was first called
}

func (n *closeWatchNet) Close() error {
	n.mu.Lock()
	if n.closes == 0 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // Next returns what is buffered, then ctx's error
		for {
			ev, err := n.w.Next(ctx)
			if err != nil {
				break
			}
			n.before = append(n.before, ev.Type.String())
		}
	}
	n.closes++
	n.mu.Unlock()
	return n.fakeNet.Close()
}

// The docs promise: network closed, then RoomDestroyed, then Done, on
// every path that destroys the room (the end of the linger, Leave with a
// negative linger, Close, the network ending), so that a watcher that sees
// RoomDestroyed can join the same room on the same network at once.
func TestRoomDestroyedIsDeliveredAfterTheNetworkIsClosed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		linger  time.Duration
		destroy func(t *testing.T, r *Room, n *closeWatchNet)
	}{
		{"linger over", 100 * time.Millisecond, func(t *testing.T, r *Room, _ *closeWatchNet) {
			if err := r.Leave(context.Background()); err != nil {
				t.Fatal(err)
			}
		}},
		{"negative linger", -1, func(t *testing.T, r *Room, _ *closeWatchNet) {
			if err := r.Leave(context.Background()); err != nil {
				t.Fatal(err)
			}
		}},
		{"Close", 0, func(t *testing.T, r *Room, _ *closeWatchNet) {
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBus()
				cfg := shellConfig()
				cfg.Linger = tc.linger
				n := &closeWatchNet{fakeNet: b.join("a")}
				r, err := New("lobby", Identity{Peer: "a"}, cfg, n)
				if err != nil {
					t.Fatal(err)
				}
				n.w = r.Watch()
				synctest.Wait()
				tc.destroy(t, r, n)
				<-r.Done()
				n.mu.Lock()
				closes, before := n.closes, n.before
				n.mu.Unlock()
				if closes == 0 {
					t.Fatal("the network was not closed before Done")
				}
				if slices.Contains(before, RoomDestroyed.String()) {
					t.Errorf("RoomDestroyed was delivered before the network was closed (events readable at Close: %q)", before)
				}
				ev, err := n.w.Next(context.Background())
				if err != nil || ev.Type != RoomDestroyed {
					t.Fatalf("after Done: event %+v, err %v; want RoomDestroyed", ev, err)
				}
				if _, err := n.w.Next(context.Background()); !errors.Is(err, ErrClosed) {
					t.Errorf("Next after RoomDestroyed: %v", err)
				}
			})
		})
	}
}
