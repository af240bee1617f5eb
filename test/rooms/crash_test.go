package rooms_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/convene-p2p/convene/p2p"
	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
	tn "github.com/convene-p2p/convene/test/internal/testnet"

	"github.com/convene-p2p/convene/room/roomnet"
)

// Repo.Shutdown leaves every joined room with a goodbye: the other members
// drop the peer with reason left, not timeout. Five peers shut down in
// turn while two others watch. (Repo.Close says no goodbye:
// TestRepoCloseSaysNoGoodbyeOthersSeeReasonTimeout.)
func TestRepoShutdownSaysGoodbyeOthersSeeReasonLeft(t *testing.T) {
	b := tn.Loopback(t, tn.Config("B"))
	c := tn.Loopback(t, tn.Config("C"))
	rb, rc := tn.Join(t, b, "bye"), tn.Join(t, c, "bye")
	tn.Connect(t, b.Host(), c.Host())
	recB, recC := tn.RecordRoom(t, rb), tn.RecordRoom(t, rc)
	var reasons []string
	for k := range 5 {
		a := tn.Loopback(t, tn.Config(fmt.Sprintf("A%d", k)))
		tn.Join(t, a, "bye")
		tn.ConnectAll(t, a.Host(), b.Host(), c.Host())
		pa := tn.Peer(a)
		tn.Eventually(t, tn.Wait, "B and C list A", func() bool { return tn.CountMember(rb, pa) == 1 && tn.CountMember(rc, pa) == 1 })
		ctx, cancel := context.WithTimeout(context.Background(), tn.Wait)
		err := a.Shutdown(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for name, rec := range map[string]*tn.Recorder[room.Event]{"B": recB, "C": recC} {
			s := rec.WaitFor(t, tn.Wait, name+" drops A", tn.MemberLeft(pa))
			reasons = append(reasons, fmt.Sprintf("A%d@%s:%v", k, name, s.Ev.Reason))
			if s.Ev.Reason != room.ReasonLeft {
				t.Errorf("%s dropped A%d (stopped with Repo.Shutdown) with reason %v, want left", name, k, s.Ev.Reason)
			}
		}
	}
	t.Logf("reasons: %v", reasons)
}

// Repo.Close stops at once, without a goodbye: the other members drop the
// closed peer with reason timeout (once its closed connections are
// noticed), never left. Three peers close in turn while two others watch.
// Before Shutdown existed, Close sent the goodbyes (this test failed).
func TestRepoCloseSaysNoGoodbyeOthersSeeReasonTimeout(t *testing.T) {
	b := tn.Loopback(t, tn.Config("B"))
	c := tn.Loopback(t, tn.Config("C"))
	rb, rc := tn.Join(t, b, "bye"), tn.Join(t, c, "bye")
	tn.Connect(t, b.Host(), c.Host())
	recB, recC := tn.RecordRoom(t, rb), tn.RecordRoom(t, rc)
	for k := range 3 {
		a := tn.Loopback(t, tn.Config(fmt.Sprintf("A%d", k)))
		tn.Join(t, a, "bye")
		tn.ConnectAll(t, a.Host(), b.Host(), c.Host())
		pa := tn.Peer(a)
		tn.Eventually(t, tn.Wait, "B and C list A", func() bool { return tn.CountMember(rb, pa) == 1 && tn.CountMember(rc, pa) == 1 })
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		for name, rec := range map[string]*tn.Recorder[room.Event]{"B": recB, "C": recC} {
			s := rec.WaitFor(t, room.LocalConfig().Timeout+tn.Wait, name+" drops A", tn.MemberLeft(pa))
			if s.Ev.Reason != room.ReasonTimeout {
				t.Errorf("%s dropped A%d (closed with Repo.Close) with reason %v, want timeout", name, k, s.Ev.Reason)
			}
		}
	}
}

// A peer whose host closes under it (no goodbye: the connections just
// close, as when the process is killed) is dropped by every other member
// with reason timeout: at the latest Timeout after it was last heard, or
// sooner when the closed connection triggers a failed probe. The time
// from the crash to each drop is logged.
func TestAbruptHostCloseIsSeenWithReasonTimeout(t *testing.T) {
	cfg := room.LocalConfig()
	b := tn.Loopback(t, tn.Config("B"))
	c := tn.Loopback(t, tn.Config("C"))
	rb, rc := tn.Join(t, b, "crash"), tn.Join(t, c, "crash")
	tn.Connect(t, b.Host(), c.Host())

	var lat []time.Duration
	for k := range 3 {
		ah := tn.Host(t, nil)
		a := tn.OnHost(t, ah.Host(), tn.Config(fmt.Sprintf("A%d", k)))
		ra := tn.Join(t, a, "crash")
		tn.ConnectAll(t, ah.Host(), b.Host(), c.Host())
		pa := tn.Peer(a)
		if err := ra.SetJSON("cursor", k); err != nil {
			t.Fatal(err)
		}
		tn.Eventually(t, tn.Wait, "B and C hold A's cursor", func() bool {
			_, okB := rb.Get(pa, "cursor")
			_, okC := rc.Get(pa, "cursor")
			return okB && okC
		})
		recB, recC := tn.RecordRoom(t, rb), tn.RecordRoom(t, rc)

		crash := time.Now()
		if err := ah.Close(); err != nil {
			t.Fatal(err)
		}
		for name, rec := range map[string]*tn.Recorder[room.Event]{"B": recB, "C": recC} {
			s := rec.WaitFor(t, cfg.Timeout+cfg.HeartbeatInterval+tn.Wait, name+" drops A", tn.MemberLeft(pa))
			d := s.At.Sub(crash)
			lat = append(lat, d)
			if s.Ev.Reason != room.ReasonTimeout {
				t.Errorf("%s dropped crashed A%d with reason %v, want timeout", name, k, s.Ev.Reason)
			}
			if d > cfg.Timeout+cfg.HeartbeatInterval+time.Second {
				t.Errorf("%s dropped crashed A%d after %v, later than Timeout %v + HeartbeatInterval %v (+1s slack)", name, k, d, cfg.Timeout, cfg.HeartbeatInterval)
			}
		}
		if rb.State(pa) != nil || rc.State(pa) != nil {
			t.Errorf("A%d's presence survived its removal", k)
		}
	}
	t.Logf("crash (host closed) -> MemberLeft(timeout) at B and C, Timeout %v: %s", cfg.Timeout, tn.Durations(lat))
}

// A member that goes silent while its connections stay open (a hung
// process: here a plain pubsub node that sends one hello and then nothing)
// is dropped with reason timeout exactly Timeout after it was last heard,
// on the receiver's clock — not earlier, and not much later.
func TestSilentMemberExpiresAfterTimeout(t *testing.T) {
	cfg := room.LocalConfig()
	b := tn.Loopback(t, tn.Config("B"))
	rb := tn.Join(t, b, "silent")
	rec := tn.RecordRoom(t, rb)
	x := tn.NewPlain(t, "silent")
	tn.Connect(t, x.Host, b.Host())
	x.WaitPeers(t, 1)
	epoch := uint64(time.Now().UnixMilli())
	x.Publish(t, tn.Encode(t, roomnet.Message{Kind: roomnet.KindHello, Epoch: epoch, Name: "Hung",
		State: tn.State(t, x.ID(), epoch, "cursor", `{"x":1}`)}))
	px := room.PeerID(x.ID())
	joined := rec.WaitFor(t, tn.Wait, "B admits the silent peer", tn.MemberJoined(px))
	left := rec.WaitFor(t, cfg.Timeout+tn.Wait, "B drops the silent peer", tn.MemberLeft(px))
	d := left.At.Sub(joined.At)
	t.Logf("silent member: joined, then dropped %v later (Timeout %v), reason %v", d, cfg.Timeout, left.Ev.Reason)
	if left.Ev.Reason != room.ReasonTimeout {
		t.Errorf("reason %v, want timeout", left.Ev.Reason)
	}
	if d < cfg.Timeout-50*time.Millisecond || d > cfg.Timeout+time.Second {
		t.Errorf("dropped %v after it was admitted, want Timeout %v", d, cfg.Timeout)
	}
	if joined.Ev.Member.Name != "Hung" {
		t.Errorf("admitted as %q, want Hung", joined.Ev.Member.Name)
	}
}

// A peer restarts with the same key (same peer ID; a new Repo, so a new
// epoch) right after crashing: B and C never list it twice, its old
// presence (written 50 times, so with a higher counter) never comes back
// once the new value is seen, and the new state wins.
func TestRestartWithSameKeyNoGhostNoDuplicateNewStateWins(t *testing.T) {
	b := tn.Loopback(t, tn.Config("B"))
	c := tn.Loopback(t, tn.Config("C"))
	rb, rc := tn.Join(t, b, "restart"), tn.Join(t, c, "restart")
	tn.Connect(t, b.Host(), c.Host())

	key := tn.Key(t)
	old := tn.Host(t, key)
	a1 := tn.OnHost(t, old.Host(), tn.Config("Alice"))
	ra1 := tn.Join(t, a1, "restart")
	tn.ConnectAll(t, old.Host(), b.Host(), c.Host())
	pa := tn.Peer(a1)
	for i := range 50 {
		if err := ra1.SetJSON("cursor", fmt.Sprintf("old-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ra1.SetJSON("old-only", true); err != nil {
		t.Fatal(err)
	}
	cursor := func(rm *room.Room) string {
		var s string
		if ok, err := rm.GetJSON(pa, "cursor", &s); !ok || err != nil {
			return ""
		}
		return s
	}
	tn.Eventually(t, tn.Wait, "B and C see the old incarnation's last cursor", func() bool {
		return cursor(rb) == "old-49" && cursor(rc) == "old-49"
	})

	// Watch B and C from before the crash: every view must list Alice at
	// most once, and after the new value shows up the old one never does.
	type obs struct {
		dup, regress bool
		sawNew       bool
	}
	watch := func(rm *room.Room) func() obs {
		var o obs
		return func() obs {
			if tn.CountMember(rm, pa) > 1 {
				o.dup = true
			}
			switch v := cursor(rm); {
			case v == "new":
				o.sawNew = true
			case o.sawNew && v != "":
				o.regress = true
			}
			if o.sawNew {
				if _, ok := rm.Get(pa, "old-only"); ok {
					o.regress = true
				}
			}
			return o
		}
	}
	wb, wc := watch(rb), watch(rc)

	if err := old.Close(); err != nil { // crash
		t.Fatal(err)
	}
	restart := time.Now()
	cfg2 := tn.Config("Alice 2")
	cfg2.Host.Key = key
	a2 := tn.Loopback(t, cfg2)
	if tn.Peer(a2) != pa {
		t.Fatalf("restarted peer has ID %s, want %s", tn.Short(tn.Peer(a2)), tn.Short(pa))
	}
	ra2 := tn.Join(t, a2, "restart")
	if err := ra2.SetJSON("cursor", "new"); err != nil {
		t.Fatal(err)
	}
	tn.ConnectAll(t, a2.Host(), b.Host(), c.Host())
	tn.Eventually(t, tn.Wait, "B and C see the new incarnation's state", func() bool {
		ob, oc := wb(), wc()
		return ob.sawNew && oc.sawNew
	})
	t.Logf("restart -> new state at B and C in %v", time.Since(restart).Round(10*time.Microsecond))
	// Keep watching for two heartbeat intervals: no duplicate, no
	// regression, the new name.
	tn.Never(t, 2*room.LocalConfig().HeartbeatInterval, "a duplicate or a regression to the old state", func() bool {
		ob, oc := wb(), wc()
		return ob.dup || ob.regress || oc.dup || oc.regress
	})
	for name, rm := range map[string]*room.Room{"B": rb, "C": rc} {
		if n := tn.CountMember(rm, pa); n != 1 {
			t.Errorf("%s lists the restarted peer %d times, want 1", name, n)
		}
		for _, m := range rm.Members() {
			if m.Peer == pa && m.Name != "Alice 2" {
				t.Errorf("%s lists the restarted peer as %q, want its new name", name, m.Name)
			}
		}
		if st := rm.State(pa); len(st) != 1 {
			t.Errorf("%s holds %d keys for the restarted peer (%v), want only the new cursor", name, len(st), st)
		}
	}
}

// room's documentation: "A killed peer whose connections close is gone in
// about a second" (DESIGN.md: "the aim is a killed peer (its connections
// close) gone everywhere in < 1 s"). A peer that is busy moving its cursor
// (a Set every 5 ms) when its host closes is dropped by B and C by the
// probe path, not only after Timeout (10 s here): a message of it that was
// already on its way must not cancel the failed probe for good. Ten
// crashes. The drop comes about 0.5 s after the kill (the probe fails at
// once, then the restart grace of 500 ms runs out); the bound is 2.5 s so
// that a loaded CI machine does not fail it — what it tells apart is the
// probe path (≈ 0.5 s) from the silence timeout (10 s). The figure itself
// is measured by test/bench/e2e (crash phase) and reported in BENCHMARKS.md.
func TestBusyPeerKilledIsGoneWithinASecond(t *testing.T) {
	cfg := room.LocalConfig()
	cfg.Timeout = 10 * time.Second // so that a silence timeout cannot pass for the probe path
	cfgB, cfgC := tn.Config("B"), tn.Config("C")
	cfgB.Room, cfgC.Room = cfg, cfg
	b, c := tn.Loopback(t, cfgB), tn.Loopback(t, cfgC)
	rb, rc := tn.Join(t, b, "busy"), tn.Join(t, c, "busy")
	tn.Connect(t, b.Host(), c.Host())

	const limit = 2500 * time.Millisecond
	var lat []time.Duration
	for k := range 10 {
		ah := tn.Host(t, nil)
		cfgA := tn.Config(fmt.Sprintf("A%d", k))
		cfgA.Room = cfg
		a := tn.OnHost(t, ah.Host(), cfgA)
		ra := tn.Join(t, a, "busy")
		tn.ConnectAll(t, ah.Host(), b.Host(), c.Host())
		pa := tn.Peer(a)
		tn.Eventually(t, tn.Wait, "B and C list A", func() bool { return tn.CountMember(rb, pa) == 1 && tn.CountMember(rc, pa) == 1 })
		recB, recC := tn.RecordRoom(t, rb), tn.RecordRoom(t, rc)

		stop := make(chan struct{})
		moved := make(chan struct{})
		go func() {
			defer close(moved)
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
					_ = ra.SetJSON("cursor", i)
				}
			}
		}()
		tn.Eventually(t, tn.Wait, "B sees A move", func() bool {
			var v int
			ok, _ := rb.GetJSON(pa, "cursor", &v)
			return ok && v > 20
		})
		crash := time.Now()
		if err := ah.Close(); err != nil {
			t.Fatal(err)
		}
		for name, rec := range map[string]*tn.Recorder[room.Event]{"B": recB, "C": recC} {
			s := rec.WaitFor(t, cfg.Timeout+tn.Wait, name+" drops A", tn.MemberLeft(pa))
			d := s.At.Sub(crash)
			lat = append(lat, d)
			if d > limit {
				t.Errorf("crash %d: %s dropped the killed peer after %v (reason %v), want within %v", k, name, d.Round(time.Millisecond), s.Ev.Reason, limit)
			}
		}
		close(stop)
		<-moved
	}
	t.Logf("busy peer killed -> dropped at B and C: %s", tn.Durations(lat))
}

// DESIGN.md's aim: "a killed peer (its connections close) gone everywhere
// in < 1 s". Members connected to the victim see its connection close and
// probe it; a member that is not connected to it learns from their
// suspect message and drops it after the refutation window unless it
// hears from the victim. With production timings (Timeout 30 s) the
// non-neighbour must drop the victim within a few seconds, not Timeout.
// (Refutation by a live subject is covered in room's machine tests.)
func TestCrashedPeerIsDroppedByMembersNotConnectedToIt(t *testing.T) {
	prod := room.Config{Timeout: 30 * time.Second}
	type node struct {
		Host *p2p.Host
		Repo *repo.Repo
	}
	mk := func(name string) (*node, *room.Room) {
		cfg := tn.Config(name)
		cfg.Room = prod
		h := tn.Host(t, nil)
		r := tn.OnHost(t, h.Host(), cfg)
		return &node{Host: h, Repo: r}, tn.Join(t, r, "suspect")
	}
	a, ra := mk("A")
	b, rb := mk("B")
	v, rv := mk("V")
	// A — B — V: A is not connected to V.
	tn.Connect(t, a.Host.Host(), b.Host.Host())
	tn.Connect(t, b.Host.Host(), v.Host.Host())
	pv := tn.Peer(v.Repo)
	if err := rv.SetJSON("cursor", 1); err != nil {
		t.Fatal(err)
	}
	tn.Eventually(t, tn.Wait, "A holds V's cursor", func() bool { _, ok := ra.Get(pv, "cursor"); return ok })
	tn.Eventually(t, tn.Wait, "B holds V's cursor", func() bool { _, ok := rb.Get(pv, "cursor"); return ok })
	if n := len(a.Host.Host().Network().ConnsToPeer(v.Host.Host().ID())); n != 0 {
		t.Fatalf("A has %d connections to V; the test needs none", n)
	}
	recA := tn.RecordRoom(t, ra)

	crash := time.Now()
	if err := v.Host.Close(); err != nil {
		t.Fatal(err)
	}
	s := recA.WaitFor(t, 10*time.Second, "A drops V", tn.MemberLeft(pv))
	if s.Ev.Reason != room.ReasonTimeout {
		t.Errorf("A dropped V with reason %v, want timeout", s.Ev.Reason)
	}
	t.Logf("V killed; A (not connected to V) dropped it after %v (Timeout %v)", s.At.Sub(crash).Round(time.Millisecond), prod.Timeout)
	if st := ra.State(pv); st != nil {
		t.Errorf("V's presence survived its removal at A: %v", st)
	}
}
