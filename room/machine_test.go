package room

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/convene-p2p/convene/ephemeral"

	"github.com/convene-p2p/convene/room/roomnet"
)

// Table and scenario tests of the pure machine: every input carries an
// explicit now; remote peers are other machines, so the messages are real.

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func testConfig() Config {
	cfg, err := Config{
		Timeout:           3 * time.Second,
		HeartbeatInterval: time.Second,
		PublishInterval:   50 * time.Millisecond,
		Linger:            3 * time.Second,
		Logger:            discardLogger(),
	}.validate()
	if err != nil {
		panic(err)
	}
	return cfg
}

// tm is a machine under test with the outputs it produced so far.
type tm struct {
	*machine
	t *testing.T
}

func newTM(t *testing.T, peer string, epoch uint64, cfg Config) *tm {
	t.Helper()
	m, err := newMachine(t0, "lobby", Identity{Peer: PeerID(peer), Name: strings.ToUpper(peer)}, cfg, epoch, 1)
	if err != nil {
		t.Fatal(err)
	}
	return &tm{machine: m, t: t}
}

// out takes the pending outputs.
func (x *tm) out() output { return x.take() }

// deliver hands msgs, authored by from, to x at now and returns x's
// outputs.
func (x *tm) deliver(now time.Time, from *tm, msgs ...roomnet.Message) output {
	for _, msg := range msgs {
		x.receive(now, from.self.Peer, msg, nil)
	}
	return x.take()
}

// heartbeat is the heartbeat x would publish now.
func (x *tm) heartbeat() roomnet.Message { return x.selfMessage(roomnet.KindHeartbeat) }

func (x *tm) mustSet(now time.Time, key, value string) {
	x.t.Helper()
	if err := x.set(now, key, []byte(value), 0); err != nil {
		x.t.Fatal(err)
	}
}

func (x *tm) memberIDs() []string {
	var out []string
	for _, id := range x.view(nil).members {
		out = append(out, string(id.Peer))
	}
	return out
}

func (x *tm) state(p string) map[string]string {
	s, ok := x.view(nil).states[PeerID(p)]
	if !ok {
		return nil
	}
	out := map[string]string{}
	for k, v := range s {
		out[k] = string(v)
	}
	return out
}

// describe renders events compactly: "member-joined b", "member-left b left",
// "presence-changed b remote +k ~k -k gone", "broadcast b hi".
func describe(evs []Event) []string {
	var out []string
	for _, ev := range evs {
		s := ev.Type.String()
		switch ev.Type {
		case MemberJoined, MemberUpdated:
			s += " " + string(ev.Member.Peer)
			if ev.Member.Name != "" {
				s += "(" + ev.Member.Name + ")"
			}
		case MemberLeft:
			s += " " + string(ev.Member.Peer) + " " + ev.Reason.String()
		case PresenceChanged:
			c := ev.Change
			s += " " + string(c.Peer) + " " + c.Cause.String()
			for _, k := range c.Added {
				s += " +" + k
			}
			for _, k := range c.Updated {
				s += " ~" + k
			}
			for _, k := range c.Removed {
				s += " -" + k
			}
			if c.Gone {
				s += " gone"
			}
		case Broadcast:
			s += " " + string(ev.Member.Peer) + " " + string(ev.Payload)
		case Lagged:
			s += fmt.Sprintf(" %d", ev.Dropped)
		}
		out = append(out, s)
	}
	return out
}

func kinds(msgs []roomnet.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Kind.String())
	}
	return out
}

func eq(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}

// run drives x's timers until end and returns the outputs with their times.
func (x *tm) run(from, end time.Time) (times []time.Time, outs []output) {
	now := from
	for {
		d, ok := x.nextDeadline()
		if !ok || d.After(end) {
			return times, outs
		}
		if d.Before(now) {
			d = now
		}
		now = d
		x.tick(now)
		o := x.take()
		times = append(times, now)
		outs = append(outs, o)
	}
}

// writeBurst makes x set key to 0, 1, … (n writes, the first at start,
// then every step), running x's timers that are due before each write,
// and then its timers until PublishInterval after the last write (the
// trailing edge). It returns every message x published, with the time of
// each, and the time of the last write.
func (x *tm) writeBurst(start time.Time, step time.Duration, n int, key string) (at []time.Time, msgs []roomnet.Message, last time.Time) {
	x.t.Helper()
	keep := func(now time.Time, o output) {
		for _, m := range o.publish {
			at, msgs = append(at, now), append(msgs, m)
		}
	}
	now := start
	for i := range n {
		now = start.Add(time.Duration(i) * step)
		for d, ok := x.nextDeadline(); ok && !d.After(now); d, ok = x.nextDeadline() {
			x.tick(d)
			keep(d, x.take())
		}
		x.mustSet(now, key, fmt.Sprint(i))
		keep(now, x.take())
	}
	times, outs := x.run(now, now.Add(x.cfg.PublishInterval))
	for i, o := range outs {
		keep(times[i], o)
	}
	return at, msgs, now
}

// newA returns testConfig and machine a (epoch 1) with its hello taken.
func newA(t *testing.T) (Config, *tm) {
	t.Helper()
	cfg := testConfig()
	a := newTM(t, "a", 1, cfg)
	a.out()
	return cfg, a
}

// newAB returns testConfig and two machines of epoch 1, named a and b
// unless names says otherwise; the first one's hello is taken, the
// second's is still pending (deliver it, or take it).
func newAB(t *testing.T, names ...string) (Config, *tm, *tm) {
	t.Helper()
	if len(names) == 0 {
		names = []string{"a", "b"}
	}
	cfg := testConfig()
	a := newTM(t, names[0], 1, cfg)
	a.out()
	return cfg, a, newTM(t, names[1], 1, cfg)
}

// admit makes from set the key/value pairs kv and delivers everything
// from has pending (its hello first, if not taken yet) to x at now.
func (x *tm) admit(now time.Time, from *tm, kv ...string) output {
	for i := 0; i+1 < len(kv); i += 2 {
		from.mustSet(now, kv[i], kv[i+1])
	}
	return x.deliver(now, from, from.out().publish...)
}

// publishTimes returns when the outputs of run published a message of
// kind.
func publishTimes(times []time.Time, outs []output, kind roomnet.MessageKind) []time.Time {
	var at []time.Time
	for i, o := range outs {
		for _, m := range o.publish {
			if m.Kind == kind {
				at = append(at, times[i])
			}
		}
	}
	return at
}

// heartbeatTimes returns when the outputs of run published a heartbeat.
func heartbeatTimes(times []time.Time, outs []output) []time.Time {
	return publishTimes(times, outs, roomnet.KindHeartbeat)
}

// published returns every message the outputs published, in order.
func published(outs []output) []roomnet.Message {
	var msgs []roomnet.Message
	for _, o := range outs {
		msgs = append(msgs, o.publish...)
	}
	return msgs
}

// count returns how many of msgs are of kind.
func count(msgs []roomnet.Message, kind roomnet.MessageKind) int {
	n := 0
	for _, m := range msgs {
		if m.Kind == kind {
			n++
		}
	}
	return n
}

func TestMachineMemberJoinsOnHello(t *testing.T) {
	_, a, b := newAB(t)
	b.mustSet(t0, "cursor", "1,2")
	hello := b.out().publish // hello (before the set), delta
	eq(t, "b publishes", kinds(hello), []string{"hello", "delta"})

	o := a.deliver(t0, b, hello[0])
	eq(t, "events", describe(o.events), []string{"member-joined b(B)"})
	o = a.deliver(t0, b, hello[1])
	eq(t, "events", describe(o.events), []string{"presence-changed b remote +cursor"})
	eq(t, "members", a.memberIDs(), []string{"a", "b"})
	if got := a.state("b"); got["cursor"] != "1,2" {
		t.Errorf("state of b = %v", got)
	}
}

func TestMachineHelloCarriesFullState(t *testing.T) {
	cfg := testConfig()
	b := newTM(t, "b", 1, cfg)
	b.mustSet(t0, "x", "1")
	b.out()
	// A restart of the same room for b: a machine whose hello carries state.
	a := newTM(t, "a", 1, cfg)
	a.out()
	b.tick(t0.Add(2 * time.Second)) // heartbeat with the full state
	hb := b.out().publish
	eq(t, "b publishes", kinds(hb), []string{"heartbeat"})
	o := a.deliver(t0.Add(2*time.Second), b, hb...)
	eq(t, "events", describe(o.events), []string{"member-joined b(B)", "presence-changed b remote +x"})
}

func TestMachineIdentityFromHeartbeat(t *testing.T) {
	_, a, b := newAB(t)
	b.out() // the hello is lost
	b.mustSet(t0, "k", "v")
	delta := b.out().publish
	o := a.deliver(t0, b, delta...)
	eq(t, "events on a delta from an unknown peer", describe(o.events), []string{"member-joined b", "presence-changed b remote +k"})
	if len(o.fetches) != 1 || o.fetches[0].peer != "b" || o.fetches[0].purpose != fetchSnapshot {
		t.Errorf("fetches = %+v, want one identity fetch of b", o.fetches)
	}
	now := t0.Add(time.Second)
	o = a.deliver(now, b, b.heartbeat())
	eq(t, "events on the heartbeat", describe(o.events), []string{"member-updated b(B)"})
	if got := a.view(nil).members[1].Name; got != "B" {
		t.Errorf("name = %q", got)
	}
}

func TestMachineFetchReplyIsJoinSnapshot(t *testing.T) {
	cfg := testConfig()
	a := newTM(t, "a", 1, cfg)
	b := newTM(t, "b", 1, cfg)
	b.mustSet(t0, "k", "v")
	a.out()
	a.peerUp(t0, "b")
	o := a.out()
	if len(o.fetches) != 1 || o.fetches[0].purpose != fetchSnapshot {
		t.Fatalf("fetches = %+v", o.fetches)
	}
	// What b's Serve answers: its view's serve message.
	reply := roomnet.FetchReply{State: b.heartbeat()}
	a.fetched(t0.Add(time.Millisecond), o.fetches[0], reply, nil)
	o = a.out()
	eq(t, "events", describe(o.events), []string{"member-joined b(B)", "presence-changed b remote +k"})
	if o.publish != nil {
		t.Errorf("a fetch reply must not trigger an answer, got %q", kinds(o.publish))
	}
}

func TestMachineFirstPeerUpRepublishesHelloDebounced(t *testing.T) {
	cfg, a := newA(t)
	for i, p := range []PeerID{"b", "c", "d"} {
		a.peerUp(t0.Add(time.Duration(i)*time.Millisecond), p)
	}
	if got := len(a.out().fetches); got != 3 {
		t.Errorf("fetches = %d, want 3", got)
	}
	times, outs := a.run(t0, t0.Add(500*time.Millisecond))
	hellos := publishTimes(times, outs, roomnet.KindHello)
	if len(hellos) != 1 || !hellos[0].Equal(t0.Add(cfg.PublishInterval)) {
		t.Errorf("hellos at %v, want one at %v", hellos, t0.Add(cfg.PublishInterval))
	}
}

func TestMachineLeaveRemovesWithReasonLeft(t *testing.T) {
	_, a, b := newAB(t)
	a.admit(t0, b, "k", "v")
	if err := b.leave(t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	bo := b.out()
	eq(t, "b publishes", kinds(bo.publish), []string{"leave"})
	eq(t, "b's own events", describe(bo.events), []string{"presence-changed b leave -k gone", "member-left b left"})
	o := a.deliver(t0.Add(time.Second), b, bo.publish...)
	eq(t, "events", describe(o.events), []string{"presence-changed b leave -k gone", "member-left b left"})
	eq(t, "members", a.memberIDs(), []string{"a"})
	if a.state("b") != nil {
		t.Errorf("state of b after leave: %v", a.state("b"))
	}
}

func TestMachineSilenceTimesOutExactlyAtDeadline(t *testing.T) {
	cfg, a, b := newAB(t)
	heard := t0.Add(100 * time.Millisecond)
	b.mustSet(t0, "k", "v")
	a.deliver(heard, b, b.out().publish...)
	deadline := heard.Add(cfg.Timeout)

	a.tick(deadline.Add(-time.Nanosecond))
	if o := a.out(); len(describe(o.events)) != 0 {
		t.Errorf("events just before the deadline: %q", describe(o.events))
	}
	d, ok := a.nextDeadline()
	if !ok || d.After(deadline) {
		t.Errorf("deadline = %v %v, want <= %v", d, ok, deadline)
	}
	a.tick(deadline)
	o := a.out()
	eq(t, "events at the deadline", describe(o.events), []string{"presence-changed b timeout -k gone", "member-left b timeout"})
	eq(t, "members", a.memberIDs(), []string{"a"})
}

func TestMachineHeartbeatKeepsMemberAlive(t *testing.T) {
	_, a, b := newAB(t)
	a.deliver(t0, b, b.out().publish...)
	// Run both for 20 s of virtual time, b's heartbeats delivered to a.
	now := t0
	for now.Before(t0.Add(20 * time.Second)) {
		da, _ := a.nextDeadline()
		db, _ := b.nextDeadline()
		now = da
		if db.Before(da) {
			now = db
		}
		b.tick(now)
		a.deliver(now, b, b.out().publish...)
		a.tick(now)
		if o := a.out(); slices.ContainsFunc(o.events, func(e Event) bool { return e.Type == MemberLeft }) {
			t.Fatalf("b left at %v: %q", now.Sub(t0), describe(o.events))
		}
	}
	eq(t, "members", a.memberIDs(), []string{"a", "b"})
}

func TestMachineRestartWithNewEpoch(t *testing.T) {
	cfg, a := newA(t)
	old := newTM(t, "b", 100, cfg)
	for i := range 50 { // a high counter in the old epoch
		old.mustSet(t0, "x", fmt.Sprint(i))
	}
	old.mustSet(t0, "stale", "yes")
	a.deliver(t0, old, old.out().publish...)
	a.deliver(t0, old, old.heartbeat())
	if got := a.state("b"); len(got) != 2 {
		t.Fatalf("state of the old b = %v", got)
	}
	oldHB := old.heartbeat() // delivered late, below

	// b restarts: new epoch, new name, different state.
	now := t0.Add(time.Second)
	b, err := newMachine(now, "lobby", Identity{Peer: "b", Name: "B2"}, cfg, 200, 2)
	if err != nil {
		t.Fatal(err)
	}
	nb := &tm{machine: b, t: t}
	nb.mustSet(now, "y", "2")
	o := a.deliver(now, nb, nb.out().publish...)
	// The hello of the new epoch (no keys yet) replaces the old state at
	// once; the delta then adds y. No member-left/member-joined pair.
	eq(t, "events", describe(o.events), []string{"member-updated b(B2)", "presence-changed b remote -stale -x", "presence-changed b remote +y"})
	if got := a.state("b"); len(got) != 1 || got["y"] != "2" {
		t.Errorf("state of b = %v, want only y=2", got)
	}
	eq(t, "members", a.memberIDs(), []string{"a", "b"})
	if len(o.publish) != 0 {
		// the answer is scheduled, not immediate
		t.Errorf("immediate publish %q", kinds(o.publish))
	}
	// The old incarnation's late heartbeat (higher counter) loses.
	o = a.deliver(now.Add(time.Millisecond), old, oldHB)
	if len(o.events) != 0 {
		t.Errorf("old epoch changed something: %q", describe(o.events))
	}
	if got := a.state("b"); len(got) != 1 || got["y"] != "2" {
		t.Errorf("state of b after a stale heartbeat = %v", got)
	}
}

func TestMachineStaleLeaveFromOldEpochIgnored(t *testing.T) {
	cfg, a := newA(t)
	old := newTM(t, "b", 100, cfg)
	a.deliver(t0, old, old.out().publish...)
	if err := old.leave(t0); err != nil {
		t.Fatal(err)
	}
	oldLeave := old.out().publish
	nb := newTM(t, "b", 200, cfg)
	a.deliver(t0, nb, nb.out().publish...)
	a.out()
	o := a.deliver(t0.Add(time.Millisecond), old, oldLeave...)
	if len(o.events) != 0 {
		t.Errorf("a stale leave changed something: %q", describe(o.events))
	}
	eq(t, "members", a.memberIDs(), []string{"a", "b"})
}

func TestMachineLeftMemberNotBroughtBackByReplays(t *testing.T) {
	cfg, a := newA(t)
	b := newTM(t, "b", 100, cfg)
	b.mustSet(t0, "k", "v")
	early := b.out().publish             // hello, delta
	early = append(early, b.heartbeat()) // heartbeat
	a.deliver(t0, b, early...)
	if err := b.leave(t0.Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	a.deliver(t0.Add(2*time.Second), b, b.out().publish...)

	// Replays of everything b said in that epoch, later: nothing.
	o := a.deliver(t0.Add(10*time.Second), b, early...)
	if len(o.events) != 0 || len(o.publish) != 0 {
		t.Errorf("replays: events %q publish %q", describe(o.events), kinds(o.publish))
	}
	eq(t, "members after replays", a.memberIDs(), []string{"a"})
	// A fetch reply of that epoch: nothing either.
	a.fetched(t0.Add(10*time.Second), fetchRequest{peer: "b", purpose: fetchSnapshot, started: t0}, roomnet.FetchReply{State: early[2]}, nil)
	eq(t, "members after a stale fetch reply", a.memberIDs(), []string{"a"})

	// A newer epoch does bring it back.
	nb := newTM(t, "b", 101, cfg)
	o = a.deliver(t0.Add(11*time.Second), nb, nb.out().publish...)
	eq(t, "events for the new epoch", describe(o.events), []string{"member-joined b(B)"})
}

func TestMachineLeaveBeforeHelloKeepsPeerOut(t *testing.T) {
	cfg, a := newA(t)
	b := newTM(t, "b", 5, cfg)
	hello := b.out().publish
	if err := b.leave(t0); err != nil {
		t.Fatal(err)
	}
	// Reordered: the goodbye arrives before the hello.
	o := a.deliver(t0, b, b.out().publish...)
	o2 := a.deliver(t0.Add(time.Millisecond), b, hello...)
	if len(o.events)+len(o2.events) != 0 {
		t.Errorf("events: %q %q", describe(o.events), describe(o2.events))
	}
	eq(t, "members", a.memberIDs(), []string{"a"})
}

func TestMachineHeartbeatCadence(t *testing.T) {
	cfg := testConfig()
	a := newTM(t, "a", 1, cfg)
	eq(t, "first publish", kinds(a.out().publish), []string{"hello"})
	times, outs := a.run(t0, t0.Add(30*cfg.HeartbeatInterval))
	prev := t0
	n := 0
	for i, o := range outs {
		for _, m := range o.publish {
			if m.Kind != roomnet.KindHeartbeat {
				t.Errorf("unexpected %v", m.Kind)
				continue
			}
			gap := times[i].Sub(prev)
			if gap < cfg.HeartbeatInterval*9/10 || gap > cfg.HeartbeatInterval*11/10 {
				t.Errorf("heartbeat gap %v outside %v ±10%%", gap, cfg.HeartbeatInterval)
			}
			if m.Epoch != 1 || m.Name != "A" {
				t.Errorf("heartbeat %+v lacks identity or epoch", m)
			}
			prev = times[i]
			n++
		}
	}
	if n < 27 || n > 34 {
		t.Errorf("%d heartbeats in 30 intervals", n)
	}
}

func TestMachineCoalescesLocalWrites(t *testing.T) {
	_, a, r := newAB(t, "a", "r")
	r.out()
	// 1000 writes over 100ms, the timers run in between.
	_, publishes, now := a.writeBurst(t0, 100*time.Microsecond, 1000, "cursor")
	deltas := count(publishes, roomnet.KindDelta)
	// Leading edge + one per 50ms window + the trailing edge.
	if deltas < 2 || deltas > 4 {
		t.Errorf("%d deltas for 1000 writes in 100ms (publishes %q)", deltas, kinds(publishes))
	}
	r.deliver(now, a, publishes...)
	if got := r.state("a")["cursor"]; got != "999" {
		t.Errorf("receiver has cursor=%q, want the last value 999", got)
	}
}

func TestMachineBurstOfWritesAtOneInstant(t *testing.T) {
	cfg, a := newA(t)
	for i := range 1000 {
		a.mustSet(t0, "cursor", fmt.Sprint(i))
	}
	first := a.out().publish
	_, outs := a.run(t0, t0.Add(cfg.PublishInterval))
	total := len(first)
	for _, o := range outs {
		total += len(o.publish)
	}
	if len(first) != 1 || total != 2 {
		t.Errorf("publishes: %d at once, %d in all; want 1 and 2", len(first), total)
	}
}

// An app that writes at exactly 1/PublishInterval, with scheduling jitter,
// gets every write published at once: an update that comes a little early
// after the previous publish is not held back to the end of the window.
func TestMachinePacingDoesNotPhaseLockAnAppTickingAtThePublishRate(t *testing.T) {
	cfg, a := newA(t)
	rng := rand.New(rand.NewPCG(1, 2))
	jitter := cfg.PublishInterval / 10
	held := 0
	for i := range 200 {
		// Nominal tick i*PublishInterval, off by up to ±10%.
		now := t0.Add(time.Duration(i)*cfg.PublishInterval - jitter + time.Duration(rng.Int64N(int64(2*jitter)+1)))
		if d, ok := a.nextDeadline(); ok && !d.After(now) {
			a.tick(d)
			a.out()
		}
		a.mustSet(now, "cursor", fmt.Sprint(i))
		if n := len(a.out().publish); n != 1 {
			held++
		}
	}
	if held != 0 {
		t.Errorf("%d of 200 writes at the publish rate were held back", held)
	}
}

// A sustained burst (a write every millisecond for a second) publishes at
// most 2 + T/PublishInterval deltas in any span T, never two closer than
// PublishInterval/2, and the trailing edge carries the last value.
func TestMachinePacingBoundsSustainedBurst(t *testing.T) {
	cfg, a, r := newAB(t, "a", "r")
	r.out()
	end := t0.Add(time.Second)
	times, sent, now := a.writeBurst(t0, time.Millisecond, int(end.Sub(t0)/time.Millisecond)+1, "cursor")
	var at []time.Time // when the deltas went out
	for i, m := range sent {
		if m.Kind == roomnet.KindDelta {
			at = append(at, times[i])
		}
	}
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < cfg.PublishInterval/2 {
			t.Fatalf("deltas %d and %d only %v apart", i-1, i, gap)
		}
	}
	for i := range at {
		for j := i; j < len(at); j++ {
			span := at[j].Sub(at[i])
			if limit := 2 + int(span/cfg.PublishInterval); j-i+1 > limit {
				t.Fatalf("%d deltas within %v, want at most %d", j-i+1, span, limit)
			}
		}
	}
	if want := int(time.Second/cfg.PublishInterval) + 2; len(at) > want {
		t.Errorf("%d deltas for a 1s burst, want at most %d", len(at), want)
	}
	r.deliver(now, a, sent...)
	if got, want := r.state("a")["cursor"], fmt.Sprint(int(end.Sub(t0)/time.Millisecond)); got != want {
		t.Errorf("receiver has cursor=%q, want the last value %s", got, want)
	}
}

func TestMachineAnswersNewcomerWithEarlyHeartbeat(t *testing.T) {
	cfg, a := newA(t)
	// Five newcomers' hellos at the same instant.
	for i := range 5 {
		n := newTM(t, fmt.Sprint("n", i), 1, cfg)
		a.deliver(t0.Add(200*time.Millisecond), n, n.out().publish...)
	}
	at := t0.Add(200 * time.Millisecond)
	d, ok := a.nextDeadline()
	if !ok || d.Before(at) || d.After(at.Add(maxAnswerJitter)) {
		t.Fatalf("answer deadline %v, want within [%v, +50ms]", d.Sub(t0), at.Sub(t0))
	}
	times, outs := a.run(at, at.Add(300*time.Millisecond))
	var hbs []time.Time
	for i, o := range outs {
		for _, m := range o.publish {
			if m.Kind == roomnet.KindHeartbeat {
				hbs = append(hbs, times[i])
			}
		}
	}
	if len(hbs) != 1 {
		t.Fatalf("heartbeats after five hellos: %v, want one", hbs)
	}
	// Another newcomer right after the answer: the next answer waits for
	// PublishInterval after the previous heartbeat.
	n := newTM(t, "late", 1, cfg)
	a.deliver(hbs[0].Add(time.Millisecond), n, n.out().publish...)
	d, _ = a.nextDeadline()
	if d.Before(hbs[0].Add(cfg.PublishInterval)) {
		t.Errorf("second answer at %v, sooner than PublishInterval after %v", d.Sub(t0), hbs[0].Sub(t0))
	}
	// A known member's hello (same epoch) is not answered: the next
	// heartbeat is the repeat of the answer just sent, not sooner.
	a.tick(d)
	a.out()
	a.deliver(d.Add(time.Millisecond), n, roomnet.Message{Kind: roomnet.KindHello, Epoch: 1, Name: "LATE"})
	if d2, _ := a.nextDeadline(); d2.Before(d.Add(answerRepeatDelay)) {
		t.Errorf("a known member's hello was answered (deadline %v)", d2.Sub(d))
	}
}

func offsets(ts []time.Time, from time.Time) []time.Duration {
	var out []time.Duration
	for _, t := range ts {
		out = append(out, t.Sub(from))
	}
	return out
}

// A member answers a newcomer's hello with an early heartbeat, then
// repeats it once, answerRepeatDelay (+0–50ms) later, when a newcomer that
// is connected to one other member only can be in that member's mesh;
// then heartbeats are regular again. The newcomer's first hello is lost
// (no peers yet): the one it republishes on its first PeerUp is answered.
func TestMachineRepeatsAnswerToNewcomerOnce(t *testing.T) {
	cfg, a := newA(t)
	n := newTM(t, "n", 1, cfg)
	n.out() // the hello at join reaches nobody
	n.peerUp(t0.Add(100*time.Millisecond), "b")
	n.out()
	_, nouts := n.run(t0.Add(100*time.Millisecond), t0.Add(200*time.Millisecond))
	var hello []roomnet.Message
	for _, o := range nouts {
		hello = append(hello, o.publish...)
	}
	eq(t, "newcomer publishes after its first PeerUp", kinds(hello), []string{"hello"})

	h := t0.Add(200 * time.Millisecond)
	o := a.deliver(h, n, hello...)
	eq(t, "events", describe(o.events), []string{"member-joined n(N)"})
	times, outs := a.run(h, h.Add(cfg.HeartbeatInterval*8/10))
	hbs := heartbeatTimes(times, outs)
	if len(hbs) != 2 {
		t.Fatalf("heartbeats after the newcomer's hello at +%v: %v, want the answer and one repeat", offsets(hbs, h), cfg.HeartbeatInterval*8/10)
	}
	if d := hbs[0].Sub(h); d < 0 || d > maxAnswerJitter {
		t.Errorf("answer %v after the hello, want within [0, %v]", d, maxAnswerJitter)
	}
	if d := hbs[1].Sub(hbs[0]); d < answerRepeatDelay || d > answerRepeatDelay+maxAnswerJitter {
		t.Errorf("repeat %v after the answer, want within [%v, %v]", d, answerRepeatDelay, answerRepeatDelay+maxAnswerJitter)
	}
	// Then the regular period, from the repeat.
	next, _ := a.nextDeadline()
	if d := next.Sub(hbs[1]); d < cfg.HeartbeatInterval*9/10 || d > cfg.HeartbeatInterval*11/10 {
		t.Errorf("next heartbeat %v after the repeat, want HeartbeatInterval ±10%%", d)
	}
	// A new epoch of a known member is a newcomer too: answered, repeated.
	n2 := newTM(t, "n", 2, cfg)
	h2 := hbs[1].Add(100 * time.Millisecond)
	o = a.deliver(h2, n2, n2.out().publish...)
	eq(t, "events on a new epoch", describe(o.events), nil)
	times, outs = a.run(h2, h2.Add(cfg.HeartbeatInterval*8/10))
	if hbs := heartbeatTimes(times, outs); len(hbs) != 2 || hbs[1].Sub(hbs[0]) < answerRepeatDelay {
		t.Errorf("heartbeats after a new epoch's hello at +%v, want an answer and one repeat", offsets(hbs, h2))
	}
}

// Newcomers arriving before the answer goes out share one answer and one
// repeat; a newcomer arriving after the answer (but before the repeat) gets
// its own answer, and the pending repeat moves after it, so the two
// answers still cost one repeat.
func TestMachineAnswerRepeatCoalescedAcrossNewcomers(t *testing.T) {
	cfg, a := newA(t)
	h := t0.Add(200 * time.Millisecond)
	for i := range 4 {
		n := newTM(t, fmt.Sprint("n", i), 1, cfg)
		a.deliver(h.Add(time.Duration(i)*time.Millisecond), n, n.out().publish...)
	}
	times, outs := a.run(h, h.Add(300*time.Millisecond))
	first := heartbeatTimes(times, outs)
	if len(first) != 1 {
		t.Fatalf("heartbeats in the 300ms after four hellos: %v, want one answer", offsets(first, h))
	}
	late := newTM(t, "late", 1, cfg)
	hl := h.Add(300 * time.Millisecond)
	a.deliver(hl, late, late.out().publish...)
	end := hl.Add(cfg.HeartbeatInterval * 8 / 10)
	times, outs = a.run(hl, end)
	hbs := heartbeatTimes(times, outs)
	if len(hbs) != 2 {
		t.Fatalf("heartbeats after the late newcomer at +%v: %v, want its answer and one repeat for all five", offsets(hbs, hl), offsets(hbs, hl))
	}
	if d := hbs[0].Sub(hl); d < 0 || d > maxAnswerJitter {
		t.Errorf("late answer %v after its hello", d)
	}
	if d := hbs[1].Sub(hbs[0]); d < answerRepeatDelay || d > answerRepeatDelay+maxAnswerJitter {
		t.Errorf("repeat %v after the last answer, want within [%v, %v]", d, answerRepeatDelay, answerRepeatDelay+maxAnswerJitter)
	}
	for _, hb := range hbs {
		if hb.Sub(first[0]) < cfg.PublishInterval {
			t.Errorf("heartbeat %v after the previous one, sooner than PublishInterval", hb.Sub(first[0]))
		}
	}
}

// Messages from members that are already known (same epoch) are neither
// answered nor repeated: once the repeat for a newcomer is out, heartbeats
// are regular whatever the known members send.
func TestMachineAnswerNotRepeatedForKnownMembers(t *testing.T) {
	cfg, a := newA(t)
	b := newTM(t, "b", 1, cfg)
	h := t0.Add(100 * time.Millisecond)
	a.deliver(h, b, b.out().publish...)
	times, outs := a.run(h, h.Add(answerRepeatDelay+200*time.Millisecond))
	if hbs := heartbeatTimes(times, outs); len(hbs) != 2 {
		t.Fatalf("heartbeats after b's hello: %v, want the answer and its repeat", offsets(hbs, h))
	}
	// b, known now, says hello again, heartbeats, writes: nothing early.
	now := h.Add(answerRepeatDelay + 300*time.Millisecond)
	a.deliver(now, b, roomnet.Message{Kind: roomnet.KindHello, Epoch: 1, Name: "B"}, b.heartbeat())
	b.mustSet(now, "k", "v")
	a.deliver(now, b, b.out().publish...)
	if a.answerAt.isSet() || a.repeatAt.isSet() {
		t.Fatalf("a known member was answered: answer at %v, repeat at %v", a.answerAt.at, a.repeatAt.at)
	}
	times, outs = a.run(now, now.Add(cfg.HeartbeatInterval*8/10))
	if hbs := heartbeatTimes(times, outs); len(hbs) != 0 {
		t.Errorf("heartbeats within 0.8 HeartbeatInterval after a known member's messages: %v", offsets(hbs, now))
	}
}

// A heartbeat that goes out anyway when the repeat is (nearly) due, at
// most PublishInterval before it, is the repeat: a regular heartbeat there
// leaves no repeat to send (heartbeats stay at most one per
// PublishInterval), and an answer to another newcomer there is followed by
// one repeat, after its own delay.
func TestMachineAnswerRepeatSatisfiedByAnyHeartbeatAtItsTime(t *testing.T) {
	cfg := testConfig()
	answered := func(t *testing.T) (*tm, time.Time) {
		a := newTM(t, "a", 1, cfg)
		a.out()
		n1 := newTM(t, "n1", 1, cfg)
		h := t0.Add(100 * time.Millisecond)
		a.deliver(h, n1, n1.out().publish...)
		times, outs := a.run(h, h.Add(300*time.Millisecond))
		if hbs := heartbeatTimes(times, outs); len(hbs) != 1 {
			t.Fatalf("answers %v", offsets(hbs, h))
		}
		if !a.repeatAt.isSet() {
			t.Fatal("no repeat scheduled")
		}
		return a, a.repeatAt.at
	}
	t.Run("regular heartbeat", func(t *testing.T) {
		a, repeat := answered(t)
		regular := repeat.Add(-cfg.PublishInterval / 2)
		a.nextHeartbeat.set(regular) // as if the period ended just there
		times, outs := a.run(regular, regular.Add(cfg.HeartbeatInterval*8/10))
		if hbs := heartbeatTimes(times, outs); len(hbs) != 1 || !hbs[0].Equal(regular) {
			t.Errorf("heartbeats from %v before the repeat was due: %v, want only the regular one",
				repeat.Sub(regular), offsets(hbs, regular))
		}
	})
	t.Run("answer to another newcomer", func(t *testing.T) {
		a, repeat := answered(t)
		n2 := newTM(t, "n2", 1, cfg)
		h2 := repeat.Add(-cfg.PublishInterval / 2)
		a.deliver(h2, n2, n2.out().publish...)
		a.answerAt.set(h2) // no jitter: answer at once
		times, outs := a.run(h2, h2.Add(cfg.HeartbeatInterval*8/10))
		hbs := heartbeatTimes(times, outs)
		if len(hbs) != 2 || !hbs[0].Equal(h2) {
			t.Fatalf("heartbeats after the second newcomer at +%v, want its answer at once and one repeat", offsets(hbs, h2))
		}
		if d := hbs[1].Sub(hbs[0]); d < answerRepeatDelay {
			t.Errorf("second repeat %v after the second answer, want at least %v", d, answerRepeatDelay)
		}
	})
}

func TestMachinePeerDownFailedProbeRemoves(t *testing.T) {
	cfg, a, b := newAB(t)
	a.admit(t0, b, "k", "v")

	down := t0.Add(500 * time.Millisecond)
	a.peerDown(down, "b")
	o := a.out()
	if len(o.fetches) != 1 || o.fetches[0].purpose != fetchProbe {
		t.Fatalf("fetches = %+v, want one probe", o.fetches)
	}
	a.fetched(down.Add(10*time.Millisecond), o.fetches[0], roomnet.FetchReply{}, errors.New("unreachable"))
	if o = a.out(); len(o.events) != 0 {
		t.Fatalf("removed before the restart grace ended: %q", describe(o.events))
	}
	gone := down.Add(10*time.Millisecond + cfg.restartGrace())
	a.tick(gone)
	o = a.out()
	eq(t, "events", describe(o.events), []string{"presence-changed b timeout -k gone", "member-left b timeout"})

	// Its messages in flight, within the quarantine: not readmitted, probed.
	o = a.deliver(gone.Add(100*time.Millisecond), b, b.heartbeat())
	if len(o.events) != 0 {
		t.Errorf("a quarantined heartbeat readmitted b: %q", describe(o.events))
	}
	if len(o.fetches) != 1 || o.fetches[0].purpose != fetchProbe {
		t.Fatalf("fetches = %+v, want a confirming probe", o.fetches)
	}
	// The probe succeeds after all: b is back, with its state.
	a.fetched(gone.Add(120*time.Millisecond), o.fetches[0], roomnet.FetchReply{State: b.heartbeat()}, nil)
	o = a.out()
	eq(t, "events after a successful probe", describe(o.events), []string{"member-joined b(B)", "presence-changed b remote +k"})
}

func TestMachinePeerDownProbeNotTrustedOverFreshMessages(t *testing.T) {
	_, a, b := newAB(t)
	a.deliver(t0, b, b.out().publish...)
	a.peerDown(t0.Add(time.Second), "b")
	probe := a.out().fetches[0]
	// b is heard from (through another path) while the probe runs, well
	// after the hint.
	a.deliver(t0.Add(1500*time.Millisecond), b, b.heartbeat())
	a.fetched(t0.Add(2*time.Second), probe, roomnet.FetchReply{}, errors.New("timeout"))
	if o := a.out(); len(o.events) != 0 {
		t.Errorf("events: %q", describe(o.events))
	}
	// And a successful probe changes nothing.
	a.peerDown(t0.Add(2*time.Second), "b")
	probe = a.out().fetches[0]
	a.fetched(t0.Add(2100*time.Millisecond), probe, roomnet.FetchReply{State: b.heartbeat()}, nil)
	if o := a.out(); len(o.events) != 0 {
		t.Errorf("events after a successful probe: %q", describe(o.events))
	}
	eq(t, "members", a.memberIDs(), []string{"a", "b"})
}

func TestMachineTimedOutMemberReturnsAfterPartitionHeals(t *testing.T) {
	cfg, a, b := newAB(t)
	a.admit(t0, b, "k", "v")
	a.tick(t0.Add(cfg.Timeout))
	eq(t, "events", describe(a.out().events), []string{"presence-changed b timeout -k gone", "member-left b timeout"})
	// The partition heals: b's next heartbeat (same epoch, nothing new).
	// It is readmitted once the readmission hold is over (a goodbye in
	// the same flush would have cancelled it).
	now := t0.Add(cfg.Timeout + time.Second)
	if o := a.deliver(now, b, b.heartbeat()); len(o.events) != 0 {
		t.Fatalf("readmitted before the hold ended: %q", describe(o.events))
	}
	a.tick(now.Add(cfg.readmitHold()))
	eq(t, "events", describe(a.out().events), []string{"member-joined b(B)", "presence-changed b remote +k"})
}

func TestMachineLingerThenDestroyed(t *testing.T) {
	cfg := testConfig()
	a := newTM(t, "a", 1, cfg)
	a.mustSet(t0, "k", "v")
	a.out()
	leaveAt := t0.Add(time.Second)
	if err := a.leave(leaveAt); err != nil {
		t.Fatal(err)
	}
	o := a.out()
	eq(t, "publish", kinds(o.publish), []string{"leave"})
	if a.status != Left {
		t.Fatalf("status %v", a.status)
	}
	if err := a.set(leaveAt, "k", nil, 0); !errors.Is(err, ErrNotJoined) {
		t.Errorf("set while left: %v", err)
	}
	if err := a.leave(leaveAt); !errors.Is(err, ErrNotJoined) {
		t.Errorf("second leave: %v", err)
	}
	if v := a.view(nil); v.status != Left || len(v.members) != 0 || v.states["a"] != nil {
		t.Errorf("view while left: %+v", v)
	}
	// Still receiving during the linger.
	b := newTM(t, "b", 1, cfg)
	o = a.deliver(leaveAt.Add(time.Second), b, b.out().publish...)
	eq(t, "events while lingering", describe(o.events), []string{"member-joined b(B)"})
	if len(o.publish) != 0 {
		t.Errorf("a lingering room answered: %q", kinds(o.publish))
	}
	// A peer that comes up during the linger gets the goodbye again: the
	// first one may have been published before anyone could receive it.
	a.peerUp(leaveAt.Add(time.Second), "c")
	o = a.out()
	eq(t, "publish on PeerUp while lingering", kinds(o.publish), []string{"leave"})
	if o.publish[0].Epoch != a.epoch() {
		t.Errorf("repeated goodbye of epoch %d, want %d", o.publish[0].Epoch, a.epoch())
	}
	times, outs := a.run(leaveAt, leaveAt.Add(time.Hour))
	var destroyedAt time.Time
	for i, o := range outs {
		if o.destroy {
			destroyedAt = times[i]
			eq(t, "last events", describe(o.events)[len(o.events)-1:], []string{"room-destroyed"})
		}
		for _, m := range o.publish {
			t.Errorf("published %v while lingering", m.Kind)
		}
	}
	if !destroyedAt.Equal(leaveAt.Add(cfg.Linger)) {
		t.Errorf("destroyed at %v, want %v", destroyedAt.Sub(t0), leaveAt.Add(cfg.Linger).Sub(t0))
	}
	if err := a.set(destroyedAt, "k", nil, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("set after destroy: %v", err)
	}
	if _, ok := a.nextDeadline(); ok {
		t.Errorf("a destroyed machine has a deadline")
	}
}

func TestMachineNegativeLingerDestroysAtOnce(t *testing.T) {
	cfg := testConfig()
	cfg.Linger = -1
	a := newTM(t, "a", 1, cfg)
	a.out()
	if err := a.leave(t0); err != nil {
		t.Fatal(err)
	}
	o := a.out()
	if !o.destroy || a.status != Closed {
		t.Errorf("destroy %v status %v", o.destroy, a.status)
	}
	eq(t, "publish", kinds(o.publish), []string{"leave"})
}

func TestMachineRejoinWithinLinger(t *testing.T) {
	cfg := testConfig()
	a := newTM(t, "a", 1, cfg)
	b := newTM(t, "b", 1, cfg)
	a.admit(t0, b, "k", "v")
	a.out()
	a.mustSet(t0, "mine", "1")
	b.deliver(t0, a, a.out().publish...)
	if err := a.leave(t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	b.deliver(t0.Add(time.Second), a, a.out().publish...)
	if err := a.rejoin(t0.Add(2*time.Second), 2); err != nil {
		t.Fatal(err)
	}
	o := a.out()
	eq(t, "publish", kinds(o.publish), []string{"hello"})
	if o.publish[0].Epoch != 2 {
		t.Errorf("hello epoch %d, want 2", o.publish[0].Epoch)
	}
	eq(t, "events", describe(o.events), []string{"member-joined a(A)"})
	if a.status != Joined {
		t.Errorf("status %v", a.status)
	}
	// Remote state survived the hand-over to the new epoch's store.
	if got := a.state("b"); got["k"] != "v" {
		t.Errorf("b's state after rejoin: %v", got)
	}
	if got := a.state("a"); len(got) != 0 {
		t.Errorf("own state after rejoin: %v", got)
	}
	eq(t, "members", a.memberIDs(), []string{"a", "b"})
	// The peer that saw the goodbye takes the new epoch back.
	ob := b.deliver(t0.Add(2*time.Second), a, o.publish...)
	eq(t, "b's events", describe(ob.events), []string{"member-joined a(A)"})
	// The old linger deadline passes: nothing.
	_, outs := a.run(t0.Add(2*time.Second), t0.Add(5*time.Second))
	for _, o := range outs {
		if o.destroy {
			t.Fatal("destroyed after rejoin")
		}
	}
	if err := a.rejoin(t0.Add(5*time.Second), 3); err != nil {
		t.Errorf("rejoin while joined: %v", err)
	}
	if a.epoch() != 2 {
		t.Errorf("rejoin while joined changed the epoch to %d", a.epoch())
	}
}

func TestMachineLimitErrors(t *testing.T) {
	cfg := testConfig()
	cfg.Limits = ephemeral.Limits{MaxKeyLen: 4, MaxValueSize: 8, MaxKeysPerPeer: 2, MaxPeers: 2}
	a := newTM(t, "a", 1, cfg)
	a.out()
	tests := []struct {
		name  string
		key   string
		value string
		want  error
	}{
		{"key too long", "toolong", "v", ephemeral.ErrKeyTooLong},
		{"value too large", "k", "123456789", ephemeral.ErrValueTooLarge},
		{"fits", "k1", "v", nil},
		{"fits again", "k2", "v", nil},
		{"too many keys", "k3", "v", ephemeral.ErrTooManyKeys},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.set(t0, tt.key, []byte(tt.value), 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("set(%q) = %v, want %v", tt.key, err, tt.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "room: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
	t.Run("too many peers", func(t *testing.T) {
		b := newTM(t, "b", 1, testConfig())
		c := newTM(t, "c", 1, testConfig())
		a.deliver(t0, b, b.out().publish...)
		o := a.deliver(t0, c, c.out().publish...)
		if len(o.events) != 0 {
			t.Errorf("events: %q", describe(o.events))
		}
		eq(t, "members", a.memberIDs(), []string{"a", "b"})
	})
}

func TestMachineBroadcast(t *testing.T) {
	cfg, a, b := newAB(t)
	a.deliver(t0, b, b.out().publish...)
	o := a.deliver(t0, b, roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: []byte("hi")})
	eq(t, "from a member", describe(o.events), []string{"broadcast b hi"})
	if o.events[0].Member.Name != "B" {
		t.Errorf("sender identity %+v", o.events[0].Member)
	}
	stranger := newTM(t, "s", 1, cfg)
	o = a.deliver(t0, stranger, roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: []byte("yo")})
	eq(t, "from a non-member", describe(o.events), []string{"broadcast s yo"})
	eq(t, "members", a.memberIDs(), []string{"a", "b"})
	// From an incarnation that said goodbye: dropped.
	a.deliver(t0, b, roomnet.Message{Kind: roomnet.KindLeave, Epoch: 1})
	o = a.deliver(t0, b, roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: []byte("late")})
	if len(o.events) != 0 {
		t.Errorf("stale broadcast delivered: %q", describe(o.events))
	}
}

func TestMachineRemoteKeyTTL(t *testing.T) {
	_, a, b := newAB(t)
	b.out()
	if err := b.set(t0, "typing", []byte("yes"), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	recv := t0.Add(100 * time.Millisecond)
	a.deliver(recv, b, b.out().publish...)
	// Keep b alive meanwhile.
	a.deliver(t0.Add(time.Second), b, b.heartbeat())
	a.tick(recv.Add(2*time.Second - time.Nanosecond))
	if o := a.out(); len(o.events) != 0 {
		t.Errorf("events before the TTL: %q", describe(o.events))
	}
	a.tick(recv.Add(2 * time.Second))
	eq(t, "events at the TTL", describe(a.out().events), []string{"presence-changed b timeout -typing"})
	eq(t, "members", a.memberIDs(), []string{"a", "b"})
}

func TestMachineIgnoresOwnAndAnonymousMessages(t *testing.T) {
	_, a := newA(t)
	a.receive(t0, "a", roomnet.Message{Kind: roomnet.KindHello, Epoch: 9}, nil)
	a.receive(t0, "", roomnet.Message{Kind: roomnet.KindHello, Epoch: 9}, nil)
	a.peerUp(t0, "a")
	if o := a.out(); len(o.events)+len(o.fetches) != 0 {
		t.Errorf("outputs: %+v", o)
	}
	eq(t, "members", a.memberIDs(), []string{"a"})
}

func TestMachineRetriesFailedSnapshotFetch(t *testing.T) {
	cfg, a := newA(t)
	a.peerUp(t0, "b")
	req := a.out().fetches[0]
	now := t0
	var gaps []time.Duration
	for {
		a.fetched(now, req, roomnet.FetchReply{}, errUnreachableTest)
		a.out()
		_, outs := a.run(now, now.Add(time.Second))
		var next *fetchRequest
		for _, o := range outs {
			for i := range o.fetches {
				next = &o.fetches[i]
			}
		}
		if next == nil {
			break
		}
		gaps = append(gaps, next.started.Sub(now))
		now, req = next.started, *next
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
	if !slices.Equal(gaps, want) {
		t.Errorf("retries after %v, want %v", gaps, want)
	}
	// A new PeerUp starts over; a success ends the retries.
	a.peerUp(now, "b")
	req = a.out().fetches[0]
	a.fetched(now, req, roomnet.FetchReply{}, errUnreachableTest)
	b := newTM(t, "b", 1, cfg)
	a.deliver(now.Add(time.Millisecond), b, b.out().publish...)
	a.tick(now.Add(time.Second))
	if o := a.out(); len(o.fetches) != 0 {
		t.Errorf("fetched a member again: %+v", o.fetches)
	}
}

var errUnreachableTest = errors.New("unreachable")

func TestMachineDeletePropagates(t *testing.T) {
	cfg := testConfig()
	a := newTM(t, "a", 1, cfg)
	r := newTM(t, "r", 1, cfg)
	r.out()
	a.mustSet(t0, "k", "v")
	r.deliver(t0, a, a.out().publish...)
	now := t0.Add(time.Second)
	if err := a.del(now, "k"); err != nil {
		t.Fatal(err)
	}
	o := a.out()
	eq(t, "local events", describe(o.events), []string{"presence-changed a local -k"})
	ro := r.deliver(now, a, o.publish...)
	eq(t, "remote events", describe(ro.events), []string{"presence-changed a remote -k"})
	// Deleting a missing key: nothing at all.
	if err := a.del(now.Add(time.Second), "missing"); err != nil {
		t.Fatal(err)
	}
	if o := a.out(); len(o.events)+len(o.publish) != 0 {
		t.Errorf("a no-op delete produced %q %q", describe(o.events), kinds(o.publish))
	}
	// The set that the delete superseded, replayed late: no resurrection.
	a2 := newTM(t, "a", 1, cfg) // same epoch, counter 1: the old set
	a2.mustSet(t0, "k", "v")
	if ro := r.deliver(now.Add(2*time.Second), a, a2.out().publish[1]); len(ro.events) != 0 {
		t.Errorf("a stale set resurrected the key: %q", describe(ro.events))
	}
}

func TestMachineForgetsRemovedPeersAfterRetention(t *testing.T) {
	cfg, a := newA(t)
	b := newTM(t, "b", 1, cfg)
	hello := b.out().publish
	a.deliver(t0, b, hello...)
	a.deliver(t0, b, roomnet.Message{Kind: roomnet.KindLeave, Epoch: 1})
	if len(a.gone) != 1 {
		t.Fatalf("gone = %v", a.gone)
	}
	a.tick(t0.Add(cfg.goneRetention() - time.Nanosecond))
	if len(a.gone) != 1 {
		t.Fatalf("forgotten too early")
	}
	a.tick(t0.Add(cfg.goneRetention()))
	a.tick(t0.Add(cfg.goneRetention() * 2))
	if len(a.gone) != 0 {
		t.Errorf("gone = %v after the retention", a.gone)
	}
}

func TestMachinePeerDownQueuedMessagesDoNotSaveADeadPeer(t *testing.T) {
	cfg, a, b := newAB(t)
	a.deliver(t0, b, b.out().publish...)
	// The network reports the peer down ahead of messages it had queued.
	down := t0.Add(time.Second)
	a.peerDown(down, "b")
	probe := a.out().fetches[0]
	b.mustSet(down, "cursor", "1")
	a.deliver(down.Add(time.Millisecond), b, b.out().publish...)
	a.out()
	a.fetched(down.Add(5*time.Millisecond), probe, roomnet.FetchReply{}, errors.New("connection refused"))
	a.tick(down.Add(5*time.Millisecond + cfg.restartGrace()))
	eq(t, "events", describe(a.out().events), []string{"presence-changed b timeout -cursor gone", "member-left b timeout"})
}

// The trailing edge is always sent, also when a goodbye follows at once: a
// write held by the pacing is published before the leave, so a receiver
// sees the last value before it sees the member go. Before, Leave dropped
// it (the CLI's documented script lost its last `set`).
func TestMachineLeavePublishesAPacedWriteBeforeTheGoodbye(t *testing.T) {
	cfg := testConfig()
	a := newTM(t, "a", 1, cfg)
	r := newTM(t, "r", 1, cfg)
	a.out()
	var sent []roomnet.Message
	for i := range 3 { // the first goes out at once, the third is held
		a.mustSet(t0, "n", fmt.Sprint(i))
		sent = append(sent, a.out().publish...)
	}
	if err := a.leave(t0); err != nil {
		t.Fatal(err)
	}
	sent = append(sent, a.out().publish...)
	if len(sent) < 2 || sent[len(sent)-1].Kind != roomnet.KindLeave || sent[len(sent)-2].Kind != roomnet.KindDelta {
		t.Fatalf("published %q, want the held delta right before the leave", kinds(sent))
	}
	r.deliver(t0, a, sent[:len(sent)-1]...)
	if got := r.state("a")["n"]; got != "2" {
		t.Errorf("before the goodbye the receiver has n=%q, want the last value 2", got)
	}
}
