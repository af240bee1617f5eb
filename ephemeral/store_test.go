package ephemeral

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"missing self", Config{Epoch: 1}},
		{"self too long", Config{Self: PeerID(strings.Repeat("x", maxPeerIDLen+1)), Epoch: 1}},
		{"zero epoch", Config{Self: alice}},
		{"negative timeout", Config{Self: alice, Epoch: 1, Timeout: -time.Second}},
		{"negative limit", Config{Self: alice, Epoch: 1, Limits: Limits{MaxPeers: -1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := New(tt.cfg); err == nil || s != nil {
				t.Fatalf("New(%+v) = %v, %v; want an error", tt.cfg, s, err)
			}
		})
	}
}

func TestNewFillsDefaults(t *testing.T) {
	s := newStoreLim(t, alice, 7, Limits{})
	want := Limits{MaxKeyLen: 64, MaxValueSize: 1024, MaxKeysPerPeer: 32, MaxPeers: 1024}
	if s.lim != want || s.timeout != 30*time.Second {
		t.Fatalf("limits %+v timeout %v, want %+v 30s", s.lim, s.timeout, want)
	}
	if s.Self() != alice || s.Epoch() != 7 {
		t.Fatalf("Self/Epoch = %s/%d", s.Self(), s.Epoch())
	}
	if v, ok := s.Version(alice); !ok || v != (Version{7, 0}) {
		t.Fatalf("Version(self) = %v %v", v, ok)
	}
	if got := s.Peers(); !slices.Equal(got, []PeerID{alice}) {
		t.Fatalf("Peers = %v", got)
	}
	wantState(t, s, alice, map[string]string{})
}

func TestCauseString(t *testing.T) {
	for c, want := range map[Cause]string{CauseLocal: "local", CauseRemote: "remote", CauseTimeout: "timeout", CauseLeave: "leave", 0: "Cause(0)"} {
		if c.String() != want {
			t.Errorf("Cause(%d).String() = %q, want %q", c, c.String(), want)
		}
	}
}

func TestVersionLess(t *testing.T) {
	tests := []struct {
		a, b Version
		less bool
	}{
		{Version{1, 5}, Version{1, 6}, true},
		{Version{1, 6}, Version{1, 5}, false},
		{Version{1, 5}, Version{1, 5}, false},
		{Version{1, 900}, Version{2, 1}, true}, // a newer epoch beats any counter
		{Version{2, 1}, Version{1, 900}, false},
	}
	for _, tt := range tests {
		if got := tt.a.Less(tt.b); got != tt.less {
			t.Errorf("%v.Less(%v) = %v, want %v", tt.a, tt.b, got, tt.less)
		}
	}
}

func TestLocalWritesReportChanges(t *testing.T) {
	type step struct {
		del   bool
		key   string
		value string
		want  Change
	}
	tests := []struct {
		name  string
		steps []step
		final map[string]string
	}{
		{"set new key is added", []step{
			{key: "k", value: "1", want: Change{Peer: alice, Added: []string{"k"}, Cause: CauseLocal}},
		}, map[string]string{"k": "1"}},
		{"set existing key is updated", []step{
			{key: "k", value: "1", want: Change{Peer: alice, Added: []string{"k"}, Cause: CauseLocal}},
			{key: "k", value: "2", want: Change{Peer: alice, Updated: []string{"k"}, Cause: CauseLocal}},
		}, map[string]string{"k": "2"}},
		{"set of the same value is still an update", []step{
			{key: "k", value: "1", want: Change{Peer: alice, Added: []string{"k"}, Cause: CauseLocal}},
			{key: "k", value: "1", want: Change{Peer: alice, Updated: []string{"k"}, Cause: CauseLocal}},
		}, map[string]string{"k": "1"}},
		{"delete reports removed", []step{
			{key: "k", value: "1", want: Change{Peer: alice, Added: []string{"k"}, Cause: CauseLocal}},
			{del: true, key: "k", want: Change{Peer: alice, Removed: []string{"k"}, Cause: CauseLocal}},
		}, map[string]string{}},
		{"delete of a missing key is a no-op", []step{
			{del: true, key: "k", want: Change{}},
		}, map[string]string{}},
		{"set after delete is added", []step{
			{key: "k", value: "1", want: Change{Peer: alice, Added: []string{"k"}, Cause: CauseLocal}},
			{del: true, key: "k", want: Change{Peer: alice, Removed: []string{"k"}, Cause: CauseLocal}},
			{key: "k", value: "3", want: Change{Peer: alice, Added: []string{"k"}, Cause: CauseLocal}},
		}, map[string]string{"k": "3"}},
		{"empty value is a value", []step{
			{key: "k", value: "", want: Change{Peer: alice, Added: []string{"k"}, Cause: CauseLocal}},
		}, map[string]string{"k": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, alice, 1)
			writes := uint64(0)
			for i, st := range tt.steps {
				var c Change
				if st.del {
					c = mustDelete(t, s, at(i), st.key)
				} else {
					c = mustSet(t, s, at(i), st.key, st.value)
				}
				if !c.Empty() {
					writes++
				}
				if !sameChange(c, st.want) {
					t.Fatalf("step %d: change %+v, want %+v", i, c, st.want)
				}
			}
			wantState(t, s, alice, tt.final)
			if v, _ := s.Version(alice); v != (Version{1, writes}) {
				t.Fatalf("Version = %v, want counter %d (one per write, none for a no-op)", v, writes)
			}
		})
	}
}

func TestReadsReturnCopies(t *testing.T) {
	s := newStore(t, alice, 1)
	in := []byte("abc")
	if _, err := s.Set(at(0), "k", in); err != nil {
		t.Fatal(err)
	}
	in[0] = 'X' // the store kept its own copy
	v, _ := s.Get(alice, "k")
	v[1] = 'Y'
	st := s.State(alice)
	st["k"][2] = 'Z'
	all := s.States()
	all[alice]["k"][0] = 'W'
	if got, _ := s.Get(alice, "k"); string(got) != "abc" {
		t.Fatalf("Get = %q after mutating inputs and outputs, want abc", got)
	}
	if _, ok := s.Get(bob, "k"); ok {
		t.Fatal("Get of an unknown peer found something")
	}
	if s.State(bob) != nil {
		t.Fatal("State of an unknown peer is not nil")
	}
}

func TestLastWriteWinsByVersion(t *testing.T) {
	a := newStore(t, alice, 1)
	d1 := delta(t, a, func() { mustSet(t, a, at(1), "k", "v1") })
	d2 := delta(t, a, func() { mustSet(t, a, at(2), "k", "v2") })
	d3 := delta(t, a, func() { mustSet(t, a, at(3), "k", "v3") })
	msgs := [][]byte{d1, d2, d3}
	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}, {0, 2, 1}, {2, 0, 1}} {
		b := newStore(t, bob, 1)
		for i, m := range order {
			mustApply(t, b, at(10+i), alice, msgs[m])
		}
		if got, _ := b.Get(alice, "k"); string(got) != "v3" {
			t.Fatalf("order %v: k = %q, want v3 (highest counter)", order, got)
		}
		if v, _ := b.Version(alice); v != (Version{1, 3}) {
			t.Fatalf("order %v: Version = %v, want {1 3}", order, v)
		}
	}
}

func TestDuplicateAndStaleUpdatesAreNoOps(t *testing.T) {
	a := newStore(t, alice, 1)
	d1 := delta(t, a, func() { mustSet(t, a, at(1), "k", "v1") })
	d2 := delta(t, a, func() { mustSet(t, a, at(2), "k", "v2") })
	snap := a.EncodeSnapshot(alice)
	tests := []struct {
		name  string
		first [][]byte
		again []byte
	}{
		{"duplicate delta", [][]byte{d2}, d2},
		{"stale delta", [][]byte{d2}, d1},
		{"duplicate snapshot", [][]byte{snap}, snap},
		{"delta older than a snapshot", [][]byte{snap}, d1},
		{"snapshot after the same delta", [][]byte{d2}, snap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newStore(t, bob, 1)
			for _, m := range tt.first {
				mustApply(t, b, at(10), alice, m)
			}
			cs, err := b.Apply(at(11), alice, tt.again)
			if err != nil || len(cs) != 0 {
				t.Fatalf("Apply = %+v, %v; want no change and no error", cs, err)
			}
			wantState(t, b, alice, map[string]string{"k": "v2"})
		})
	}
}

func TestTombstoneStopsLateOlderSet(t *testing.T) {
	a := newStore(t, alice, 1)
	set := delta(t, a, func() { mustSet(t, a, at(1), "k", "v") })
	del := delta(t, a, func() { mustDelete(t, a, at(2), "k") })
	tests := []struct {
		name  string
		order [][]byte
		want  [][]Change
	}{
		{"in order", [][]byte{set, del}, [][]Change{
			{{Peer: alice, Added: []string{"k"}, Cause: CauseRemote}},
			{{Peer: alice, Removed: []string{"k"}, Cause: CauseRemote}},
		}},
		{"delete first, late set", [][]byte{del, set}, [][]Change{nil, nil}},
		{"late set twice", [][]byte{del, set, set}, [][]Change{nil, nil, nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newStore(t, bob, 1)
			for i, m := range tt.order {
				wantChanges(t, mustApply(t, b, at(10+i), alice, m), tt.want[i]...)
			}
			wantState(t, b, alice, map[string]string{})
			if v, _ := b.Version(alice); v != (Version{1, 2}) {
				t.Fatalf("Version = %v, want {1 2}", v)
			}
		})
	}
}

func TestNewEpochReplacesOldState(t *testing.T) {
	old := newStore(t, alice, 1)
	mustSet(t, old, at(0), "a", "old")
	mustSet(t, old, at(0), "b", "old")
	mustSet(t, old, at(0), "c", "old")
	for i := range 50 {
		mustSet(t, old, at(i), "a", "old")
	}
	oldDelta := old.EncodeDelta()
	oldSnap := old.EncodeSnapshot()
	lateOld := delta(t, old, func() { mustSet(t, old, at(60), "b", "late") }) // counter 54

	restarted := newStore(t, alice, 2) // same peer, new run
	newDelta := delta(t, restarted, func() { mustSet(t, restarted, at(100), "a", "new") })
	newSnap := restarted.EncodeSnapshot()

	tests := []struct {
		name string
		msg  []byte
	}{
		{"by delta", newDelta},
		{"by snapshot", newSnap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newStore(t, bob, 1)
			mustApply(t, b, at(1), alice, oldDelta)
			cs := mustApply(t, b, at(101), alice, tt.msg)
			wantChanges(t, cs, Change{Peer: alice, Updated: []string{"a"}, Removed: []string{"b", "c"}, Cause: CauseRemote})
			wantState(t, b, alice, map[string]string{"a": "new"})
			if v, _ := b.Version(alice); v != (Version{2, 1}) {
				t.Fatalf("Version = %v, want {2 1}", v)
			}
			// The old run's higher counters never win again.
			for _, m := range [][]byte{lateOld, oldDelta, oldSnap} {
				if cs := mustApply(t, b, at(102), alice, m); len(cs) != 0 {
					t.Fatalf("old-epoch data changed %+v", cs)
				}
			}
			wantState(t, b, alice, map[string]string{"a": "new"})
		})
	}
}

func TestEmptyDeltaOfNewEpochClearsOldKeys(t *testing.T) {
	b := newStore(t, bob, 1)
	mustApply(t, b, at(0), alice, tDelta(1, tEntry{key: "k", counter: 9, value: "v"}))
	cs := mustApply(t, b, at(1), alice, tDelta(2))
	wantChanges(t, cs, Change{Peer: alice, Removed: []string{"k"}, Cause: CauseRemote})
	wantState(t, b, alice, map[string]string{})
}

func TestOlderEpochIsIgnored(t *testing.T) {
	b := newStore(t, bob, 1)
	mustApply(t, b, at(0), alice, tDelta(5, tEntry{key: "k", counter: 1, value: "five"}))
	for _, m := range [][]byte{
		tDelta(4, tEntry{key: "k", counter: 99, value: "four"}),
		tDelta(4, tEntry{key: "other", counter: 99, value: "four"}),
		tSnap(tRec{peer: string(alice), epoch: 4, complete: 99, es: []tEntry{{key: "k", counter: 99, value: "four"}}}),
	} {
		// Heard later than before, but ignored data does not count as hearing the peer.
		if cs := mustApply(t, b, at(20_000), alice, m); len(cs) != 0 {
			t.Fatalf("older epoch changed %+v", cs)
		}
	}
	wantState(t, b, alice, map[string]string{"k": "five"})
	if cs := b.Expire(at(30_000)); len(cs) != 1 || !cs[0].Gone {
		t.Fatalf("Expire at 30s = %+v; the ignored data must not have refreshed liveness", cs)
	}
}

func TestApplyRefusesForeignPeer(t *testing.T) {
	c := newStore(t, carol, 1)
	mustSet(t, c, at(0), "k", "carol")
	a := newStore(t, alice, 1)
	mustSet(t, a, at(0), "k", "alice")
	hub := newStore(t, "hub", 1)
	mustApply(t, hub, at(0), carol, c.EncodeSnapshot())
	mustApply(t, hub, at(0), alice, a.EncodeSnapshot())

	tests := []struct {
		name string
		data []byte
	}{
		{"another peer's snapshot", c.EncodeSnapshot()},
		{"multi-peer snapshot including the author", hub.EncodeSnapshot(alice, carol)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newStore(t, bob, 1)
			before := b.EncodeSnapshot()
			cs, err := b.Apply(at(1), alice, tt.data)
			if !errors.Is(err, ErrForeignPeer) || cs != nil {
				t.Fatalf("Apply = %+v, %v; want ErrForeignPeer", cs, err)
			}
			if err := Verify(tt.data, alice, Limits{}); !errors.Is(err, ErrForeignPeer) {
				t.Fatalf("Verify = %v, want ErrForeignPeer", err)
			}
			if !bytes.Equal(before, b.EncodeSnapshot()) || len(b.Peers()) != 1 {
				t.Fatalf("state changed after a refused Apply: peers %v", b.Peers())
			}
		})
	}
}

func TestApplyIgnoresOwnData(t *testing.T) {
	b := newStore(t, bob, 1)
	mustSet(t, b, at(0), "k", "mine")
	own := b.EncodeDelta()
	forged := tDelta(9, tEntry{key: "k", counter: 99, value: "forged"})
	for _, m := range [][]byte{own, forged, b.EncodeSnapshot()} {
		if cs, err := b.Apply(at(1), bob, m); cs != nil || err != nil {
			t.Fatalf("Apply(self) = %+v, %v; want nil, nil", cs, err)
		}
	}
	// A trusted multi-peer snapshot carrying a record of self skips that record.
	cs, err := b.ApplyTrusted(at(2), tSnap(
		tRec{peer: string(alice), epoch: 1, complete: 1, es: []tEntry{{key: "k", counter: 1, value: "a"}}},
		tRec{peer: string(bob), epoch: 9, complete: 99, es: []tEntry{{key: "k", counter: 99, value: "forged"}}},
	))
	if err != nil {
		t.Fatal(err)
	}
	wantChanges(t, cs, Change{Peer: alice, Added: []string{"k"}, Cause: CauseRemote})
	wantState(t, b, bob, map[string]string{"k": "mine"})
	if v, _ := b.Version(bob); v != (Version{1, 1}) {
		t.Fatalf("Version(self) = %v", v)
	}
}

func TestSnapshotRemovesKeysDeletedBeforeItsCounter(t *testing.T) {
	a := newStore(t, alice, 1)
	b := newStore(t, bob, 1)
	mustApply(t, b, at(0), alice, delta(t, a, func() {
		mustSet(t, a, at(0), "a", "1") // 1
		mustSet(t, a, at(0), "b", "1") // 2
		mustSet(t, a, at(0), "c", "1") // 3
	}))
	mustDelete(t, a, at(1), "b")   // 4: this delta is lost
	mustSet(t, a, at(1), "a", "2") // 5
	_ = a.EncodeDelta()
	snap := a.EncodeSnapshot() // complete through 5
	newer := delta(t, a, func() { mustSet(t, a, at(2), "d", "1") })
	mustApply(t, b, at(2), alice, newer) // counter 6 arrives before the snapshot

	cs := mustApply(t, b, at(3), alice, snap)
	wantChanges(t, cs, Change{Peer: alice, Updated: []string{"a"}, Removed: []string{"b"}, Cause: CauseRemote})
	wantState(t, b, alice, map[string]string{"a": "2", "c": "1", "d": "1"}) // d (6 > 5) stays
	// A late copy of b's original set is stale now.
	if cs := mustApply(t, b, at(4), alice, tDelta(1, tEntry{key: "b", counter: 2, value: "1"})); len(cs) != 0 {
		t.Fatalf("late set of a key deleted before the snapshot: %+v", cs)
	}
}

func TestSnapshotFromNewPeerAddsEverything(t *testing.T) {
	a := newStore(t, alice, 3)
	mustSet(t, a, at(0), "x", "1")
	mustSet(t, a, at(0), "y", "2")
	mustDelete(t, a, at(0), "x")
	b := newStore(t, bob, 1)
	cs := mustApply(t, b, at(1), alice, a.EncodeSnapshot(alice))
	wantChanges(t, cs, Change{Peer: alice, Added: []string{"y"}, Cause: CauseRemote})
	if v, _ := b.Version(alice); v != (Version{3, 3}) {
		t.Fatalf("Version = %v, want {3 3}", v)
	}
	// A late delta carrying x's original set is older than the snapshot.
	if cs := mustApply(t, b, at(2), alice, tDelta(3, tEntry{key: "x", counter: 1, value: "1"})); len(cs) != 0 {
		t.Fatalf("late set resurrected x: %+v", cs)
	}
}

func TestApplyTrustedMultiPeerSnapshot(t *testing.T) {
	hub := newStore(t, "hub", 1)
	for _, p := range []PeerID{carol, alice} {
		s := newStore(t, p, 1)
		mustSet(t, s, at(0), "name", string(p))
		mustApply(t, hub, at(0), p, s.EncodeSnapshot())
	}
	mustSet(t, hub, at(0), "name", "hub")
	b := newStore(t, bob, 1)
	cs, err := b.ApplyTrusted(at(1), hub.EncodeSnapshot())
	if err != nil {
		t.Fatal(err)
	}
	wantChanges(t, cs,
		Change{Peer: alice, Added: []string{"name"}, Cause: CauseRemote},
		Change{Peer: carol, Added: []string{"name"}, Cause: CauseRemote},
		Change{Peer: "hub", Added: []string{"name"}, Cause: CauseRemote},
	)
	if got := b.Peers(); !slices.Equal(got, []PeerID{alice, bob, carol, "hub"}) {
		t.Fatalf("Peers = %v", got)
	}
	if _, err := b.ApplyTrusted(at(1), tDelta(1)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("ApplyTrusted(delta) = %v, want ErrMalformed", err)
	}
}

func TestHeardAndExpireUseReceiverClockInclusiveDeadline(t *testing.T) {
	b := newStore(t, bob, 1)
	if err := b.Heard(at(0), alice); err != nil {
		t.Fatal(err)
	}
	mustApply(t, b, at(5_000), alice, tDelta(1, tEntry{key: "k", counter: 1, value: "v"})) // Apply counts as Heard
	if d, ok := b.NextDeadline(); !ok || !d.Equal(at(35_000)) {
		t.Fatalf("NextDeadline = %v %v, want 35s", d, ok)
	}
	if cs := b.Expire(at(35_000).Add(-time.Nanosecond)); cs != nil {
		t.Fatalf("Expire just before the deadline = %+v", cs)
	}
	cs := b.Expire(at(35_000))
	wantChanges(t, cs, Change{Peer: alice, Removed: []string{"k"}, Cause: CauseTimeout, Gone: true})
	if b.State(alice) != nil {
		t.Fatal("expired peer still known")
	}
	if _, ok := b.NextDeadline(); ok {
		t.Fatal("NextDeadline after the only peer expired")
	}
	// Heard of self and a Heard that goes back in time change nothing.
	if err := b.Heard(at(0), bob); err != nil {
		t.Fatal(err)
	}
	if err := b.Heard(at(40_000), carol); err != nil {
		t.Fatal(err)
	}
	if err := b.Heard(at(39_000), carol); err != nil {
		t.Fatal(err)
	}
	if d, _ := b.NextDeadline(); !d.Equal(at(70_000)) {
		t.Fatalf("NextDeadline = %v, want 70s (latest heard wins)", d)
	}
	if err := b.Heard(at(0), ""); err == nil {
		t.Fatal("Heard of an empty peer ID succeeded")
	}
}

func TestTimedOutPeerComesBackOnlyWithNewerData(t *testing.T) {
	b := newStore(t, bob, 1)
	old := tDelta(1, tEntry{key: "k", counter: 3, value: "v"})
	mustApply(t, b, at(0), alice, old)
	b.Expire(at(30_000))
	if cs := mustApply(t, b, at(31_000), alice, old); cs != nil || b.State(alice) != nil {
		t.Fatalf("a duplicate brought back a timed-out peer: %+v", cs)
	}
	cs := mustApply(t, b, at(32_000), alice, tDelta(1, tEntry{key: "m", counter: 4, value: "w"}))
	wantChanges(t, cs, Change{Peer: alice, Added: []string{"m"}, Cause: CauseRemote})
	wantState(t, b, alice, map[string]string{"m": "w"})
	// Its snapshot brings back the keys it still has.
	cs = mustApply(t, b, at(33_000), alice, tSnap(tRec{peer: string(alice), epoch: 1, complete: 4,
		es: []tEntry{{key: "k", counter: 3, value: "v"}, {key: "m", counter: 4, value: "w"}}}))
	wantChanges(t, cs, Change{Peer: alice, Added: []string{"k"}, Cause: CauseRemote})
}

func TestRemoveWithLeave(t *testing.T) {
	b := newStore(t, bob, 1)
	mustApply(t, b, at(0), alice, tDelta(4, tEntry{key: "a", counter: 1, value: "1"}, tEntry{key: "b", counter: 2, value: "2"}))
	c := b.Remove(alice, CauseLeave)
	if !sameChange(c, Change{Peer: alice, Removed: []string{"a", "b"}, Cause: CauseLeave, Gone: true}) {
		t.Fatalf("Remove = %+v", c)
	}
	if b.State(alice) != nil || slices.Contains(b.Peers(), alice) {
		t.Fatal("removed peer still known")
	}
	// A late message of the run that left does not bring it back.
	late := tDelta(4, tEntry{key: "c", counter: 3, value: "3"})
	if cs := mustApply(t, b, at(1), alice, late); cs != nil || b.State(alice) != nil {
		t.Fatalf("late message after leave: %+v", cs)
	}
	// Rejoining is a new epoch.
	cs := mustApply(t, b, at(2), alice, tDelta(5, tEntry{key: "a", counter: 1, value: "again"}))
	wantChanges(t, cs, Change{Peer: alice, Added: []string{"a"}, Cause: CauseRemote})

	for _, p := range []PeerID{bob, carol} {
		if c := b.Remove(p, CauseLeave); !c.Empty() {
			t.Fatalf("Remove(%s) = %+v, want empty", p, c)
		}
	}
}

func TestHeardAfterLeaveStillIgnoresTheOldRun(t *testing.T) {
	b := newStore(t, bob, 1)
	mustApply(t, b, at(0), alice, tDelta(4, tEntry{key: "a", counter: 1, value: "1"}))
	b.Remove(alice, CauseLeave)
	if err := b.Heard(at(1), alice); err != nil { // e.g. a late heartbeat
		t.Fatal(err)
	}
	if cs := mustApply(t, b, at(2), alice, tDelta(4, tEntry{key: "a", counter: 2, value: "2"})); cs != nil {
		t.Fatalf("old run after leave: %+v", cs)
	}
	wantState(t, b, alice, map[string]string{})
}

func TestTTLKeysExpireLocallyAndRemotely(t *testing.T) {
	a := newStore(t, alice, 1)
	b := newStore(t, bob, 1)
	c, err := a.SetTTL(at(0), "typing", []byte("yes"), 10*time.Second)
	if err != nil || !sameChange(c, Change{Peer: alice, Added: []string{"typing"}, Cause: CauseLocal}) {
		t.Fatalf("SetTTL = %+v, %v", c, err)
	}
	mustSet(t, a, at(0), "name", "A")
	d := a.EncodeDelta()
	mustApply(t, b, at(3_000), alice, d) // receipt on b's clock: 3 s after the write

	// At the author: 10 s after the write.
	if d, _ := a.NextDeadline(); !d.Equal(at(10_000)) {
		t.Fatalf("author NextDeadline = %v, want 10s", d)
	}
	if cs := a.Expire(at(9_999)); cs != nil {
		t.Fatalf("author expired early: %+v", cs)
	}
	wantChanges(t, a.Expire(at(10_000)), Change{Peer: alice, Removed: []string{"typing"}, Cause: CauseTimeout})
	wantState(t, a, alice, map[string]string{"name": "A"})
	if d := a.EncodeDelta(); d != nil {
		t.Fatalf("local expiry of a sent key produced a delta %x; receivers expire it themselves", d)
	}

	// At the receiver: 10 s after receipt, on its own clock.
	if d, _ := b.NextDeadline(); !d.Equal(at(13_000)) {
		t.Fatalf("receiver NextDeadline = %v, want 13s", d)
	}
	if cs := b.Expire(at(12_999)); cs != nil {
		t.Fatalf("receiver expired early: %+v", cs)
	}
	if _, ok := b.Get(alice, "typing"); !ok {
		t.Fatal("typing hidden before its deadline")
	}
	wantChanges(t, b.Expire(at(13_000)), Change{Peer: alice, Removed: []string{"typing"}, Cause: CauseTimeout})
	wantState(t, b, alice, map[string]string{"name": "A"})
	// A late copy of the same write cannot bring it back.
	if cs := mustApply(t, b, at(14_000), alice, d); cs != nil {
		t.Fatalf("late duplicate resurrected an expired key: %+v", cs)
	}
	if _, err := a.SetTTL(at(0), "k", nil, 0); err == nil {
		t.Fatal("SetTTL with ttl 0 succeeded")
	}
}

func TestTTLTravelsAsTimeLeft(t *testing.T) {
	a := newStore(t, alice, 1)
	if _, err := a.SetTTL(at(0), "typing", []byte("1"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := a.Heard(at(4_000), alice); err != nil { // the store's clock moves on
		t.Fatal(err)
	}
	b := newStore(t, bob, 1)
	mustApply(t, b, at(100_000), alice, a.EncodeDelta())
	if d, _ := b.NextDeadline(); !d.Equal(at(106_000)) {
		t.Fatalf("receiver deadline = %v, want receipt + 6s left", d)
	}
	// A snapshot carries the time left too; an expired key is not in it.
	c := newStore(t, carol, 1)
	mustApply(t, c, at(0), alice, a.EncodeSnapshot(alice))
	if d, _ := c.NextDeadline(); !d.Equal(at(6_000)) {
		t.Fatalf("snapshot receiver deadline = %v, want 6s", d)
	}
	if err := a.Heard(at(10_000), alice); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Get(alice, "typing"); ok {
		t.Fatal("Get shows a key past its TTL before Expire ran")
	}
	e := newStore(t, "erin", 1)
	mustApply(t, e, at(0), alice, a.EncodeSnapshot(alice))
	wantState(t, e, alice, map[string]string{})
}

func TestExpiredUnsentKeyTravelsAsTombstone(t *testing.T) {
	a := newStore(t, alice, 1)
	b := newStore(t, bob, 1)
	mustApply(t, b, at(0), alice, delta(t, a, func() { mustSet(t, a, at(0), "k", "old") }))
	if _, err := a.SetTTL(at(1), "k", []byte("brief"), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	wantChanges(t, a.Expire(at(2)), Change{Peer: alice, Removed: []string{"k"}, Cause: CauseTimeout})
	cs := mustApply(t, b, at(3), alice, a.EncodeDelta())
	wantChanges(t, cs, Change{Peer: alice, Removed: []string{"k"}, Cause: CauseRemote})
}

func TestNextDeadline(t *testing.T) {
	b := newStore(t, bob, 1)
	if _, ok := b.NextDeadline(); ok {
		t.Fatal("deadline in an empty store")
	}
	if _, err := b.SetTTL(at(0), "local", []byte("1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if d, ok := b.NextDeadline(); !ok || !d.Equal(at(60_000)) {
		t.Fatalf("NextDeadline = %v %v, want 60s (local TTL)", d, ok)
	}
	_ = b.Heard(at(1_000), alice)
	_ = b.Heard(at(2_000), carol)
	if d, _ := b.NextDeadline(); !d.Equal(at(31_000)) {
		t.Fatalf("NextDeadline = %v, want 31s (alice's timeout)", d)
	}
	_ = b.Heard(at(5_000), alice) // alice's deadline moves past carol's
	if d, _ := b.NextDeadline(); !d.Equal(at(32_000)) {
		t.Fatalf("NextDeadline = %v, want 32s (carol's timeout)", d)
	}
	mustApply(t, b, at(6_000), alice, tDelta(1, tEntry{key: "t", counter: 1, ttlMs: 500, value: "x"}))
	if d, _ := b.NextDeadline(); !d.Equal(at(6_500)) {
		t.Fatalf("NextDeadline = %v, want 6.5s (alice's TTL key)", d)
	}
	b.Remove(alice, CauseLeave)
	if d, _ := b.NextDeadline(); !d.Equal(at(32_000)) {
		t.Fatalf("NextDeadline after Remove = %v, want 32s", d)
	}
	if _, err := b.Set(at(7_000), "local", []byte("no ttl")); err != nil {
		t.Fatal(err)
	}
	b.Expire(at(32_000))
	if _, ok := b.NextDeadline(); ok {
		t.Fatal("deadline left after everything expired")
	}
}

func TestChangeEmpty(t *testing.T) {
	tests := []struct {
		c     Change
		empty bool
	}{
		{Change{}, true},
		{Change{Peer: alice, Cause: CauseRemote}, true},
		{Change{Peer: alice, Added: []string{"k"}}, false},
		{Change{Peer: alice, Updated: []string{"k"}}, false},
		{Change{Peer: alice, Removed: []string{"k"}}, false},
		{Change{Peer: alice, Gone: true}, false},
	}
	for _, tt := range tests {
		if tt.c.Empty() != tt.empty {
			t.Errorf("%+v.Empty() = %v", tt.c, !tt.empty)
		}
	}
}

func TestChangeKeysAreSorted(t *testing.T) {
	b := newStore(t, bob, 1)
	mustApply(t, b, at(0), alice, tDelta(1,
		tEntry{key: "a", counter: 1, value: "1"}, tEntry{key: "c", counter: 2, value: "1"},
		tEntry{key: "e", counter: 3, value: "1"}, tEntry{key: "g", counter: 4, value: "1"}))
	cs := mustApply(t, b, at(1), alice, tDelta(1,
		tEntry{key: "a", counter: 9, tomb: true}, tEntry{key: "b", counter: 8, value: "2"},
		tEntry{key: "c", counter: 7, value: "2"}, tEntry{key: "d", counter: 6, value: "2"},
		tEntry{key: "e", counter: 5, tomb: true}, tEntry{key: "g", counter: 10, value: "2"}))
	wantChanges(t, cs, Change{Peer: alice, Added: []string{"b", "d"}, Updated: []string{"c", "g"}, Removed: []string{"a", "e"}, Cause: CauseRemote})
	c := b.Remove(alice, CauseTimeout)
	if !slices.Equal(c.Removed, []string{"b", "c", "d", "g"}) {
		t.Fatalf("Remove keys = %v", c.Removed)
	}
}

func TestLimitsGiveTheirErrors(t *testing.T) {
	lim := Limits{MaxKeyLen: 4, MaxValueSize: 8, MaxKeysPerPeer: 2, MaxPeers: 3}
	tests := []struct {
		name string
		do   func(t *testing.T, s *Store) error
		want []error
	}{
		{"set key too long", func(t *testing.T, s *Store) error { _, err := s.Set(at(0), "toolong", nil); return err }, []error{ErrKeyTooLong}},
		{"set value too large", func(t *testing.T, s *Store) error {
			_, err := s.SetTTL(at(0), "k", make([]byte, 9), time.Second)
			return err
		}, []error{ErrValueTooLarge}},
		{"set too many keys", func(t *testing.T, s *Store) error {
			mustSet(t, s, at(0), "a", "")
			mustSet(t, s, at(0), "b", "")
			mustSet(t, s, at(0), "b", "ok")
			_, err := s.Set(at(0), "c", nil)
			return err
		}, []error{ErrTooManyKeys}},
		{"heard too many peers", func(t *testing.T, s *Store) error {
			_ = s.Heard(at(0), bob)
			_ = s.Heard(at(0), carol)
			return s.Heard(at(0), "dave")
		}, []error{ErrTooManyPeers}},
		{"apply from one peer too many", func(t *testing.T, s *Store) error {
			_ = s.Heard(at(0), bob)
			_ = s.Heard(at(0), carol)
			_, err := s.Apply(at(0), "dave", tDelta(1))
			return err
		}, []error{ErrTooManyPeers}},
		{"trusted snapshot with too many peers", func(t *testing.T, s *Store) error {
			_, err := s.ApplyTrusted(at(0), tSnap(tRec{peer: "p1", epoch: 1}, tRec{peer: "p2", epoch: 1}, tRec{peer: "p3", epoch: 1}))
			return err
		}, []error{ErrTooManyPeers}},
		{"apply would hold too many keys", func(t *testing.T, s *Store) error {
			mustApply(t, s, at(0), bob, tDelta(1, tEntry{key: "a", counter: 1}, tEntry{key: "b", counter: 2}))
			_, err := s.Apply(at(0), bob, tDelta(1, tEntry{key: "c", counter: 3}))
			return err
		}, []error{ErrTooManyKeys}},
		{"decoded key too long", func(t *testing.T, s *Store) error {
			_, err := s.Apply(at(0), bob, tDelta(1, tEntry{key: "toolong", counter: 1}))
			return err
		}, []error{ErrTooLarge, ErrKeyTooLong}},
		{"decoded value too large", func(t *testing.T, s *Store) error {
			_, err := s.Apply(at(0), bob, tDelta(1, tEntry{key: "k", counter: 1, value: "123456789"}))
			return err
		}, []error{ErrTooLarge, ErrValueTooLarge}},
		{"decoded delta with too many live keys", func(t *testing.T, s *Store) error {
			_, err := s.Apply(at(0), bob, tDelta(1, tEntry{key: "a", counter: 1}, tEntry{key: "b", counter: 2}, tEntry{key: "c", counter: 3}))
			return err
		}, []error{ErrTooLarge, ErrTooManyKeys}},
		{"decoded snapshot with too many records", func(t *testing.T, s *Store) error {
			_, err := s.ApplyTrusted(at(0), tSnap(tRec{peer: "1", epoch: 1}, tRec{peer: "2", epoch: 1}, tRec{peer: "3", epoch: 1}, tRec{peer: "4", epoch: 1}))
			return err
		}, []error{ErrTooLarge, ErrTooManyPeers}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStoreLim(t, alice, 1, lim)
			err := tt.do(t, s)
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Fatalf("err = %v, want %v", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "ephemeral: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestFailedApplyChangesNothing(t *testing.T) {
	s := newStoreLim(t, alice, 1, Limits{MaxKeysPerPeer: 2, MaxPeers: 3})
	mustApply(t, s, at(0), bob, tDelta(1, tEntry{key: "a", counter: 1, value: "1"}, tEntry{key: "b", counter: 2, value: "1"}))
	before := s.EncodeSnapshot()
	// One valid update and one new key over the limit: neither may land.
	if _, err := s.Apply(at(5_000), bob, tDelta(1, tEntry{key: "a", counter: 3, value: "2"}, tEntry{key: "c", counter: 4, value: "1"})); !errors.Is(err, ErrTooManyKeys) {
		t.Fatalf("err = %v", err)
	}
	// A trusted snapshot whose second record is over the limit.
	if _, err := s.ApplyTrusted(at(5_000), tSnap(
		tRec{peer: "a-new", epoch: 1, complete: 1, es: []tEntry{{key: "x", counter: 1}}},
		tRec{peer: string(bob), epoch: 1, complete: 9, es: []tEntry{{key: "a", counter: 3}, {key: "b", counter: 2}, {key: "c", counter: 9}}},
	)); err == nil {
		t.Fatal("no error")
	}
	if !bytes.Equal(before, s.EncodeSnapshot()) || len(s.Peers()) != 2 {
		t.Fatal("a failed Apply changed the store")
	}
	if d, _ := s.NextDeadline(); !d.Equal(at(30_000)) {
		t.Fatalf("a failed Apply counted as Heard: deadline %v", d)
	}
}

func TestReceiverTombstonesAreBounded(t *testing.T) {
	s := newStoreLim(t, bob, 1, Limits{MaxKeysPerPeer: 3})
	var es []tEntry
	for i, k := range []string{"a", "b", "c", "d", "e"} {
		es = append(es, tEntry{key: k, counter: uint64(10 + i), tomb: true})
	}
	mustApply(t, s, at(0), alice, tDelta(1, es...))
	p := s.peers[string(alice)]
	if p.tombs != 3 || len(p.entries) != 3 || p.floor != 11 {
		t.Fatalf("tombs %d entries %d floor %d; want 3 tombstones kept (c, d, e) and floor 11", p.tombs, len(p.entries), p.floor)
	}
	// Late sets older than a forgotten tombstone stay out (floor); older than a kept one too.
	for _, e := range []tEntry{{key: "a", counter: 5, value: "x"}, {key: "e", counter: 13, value: "x"}, {key: "c", counter: 11, value: "x"}} {
		if cs := mustApply(t, s, at(1), alice, tDelta(1, e)); cs != nil {
			t.Fatalf("late set %+v resurrected: %+v", e, cs)
		}
	}
	// A newer set is accepted, and the author's snapshot repairs anything the floor skipped.
	cs := mustApply(t, s, at(2), alice, tSnap(tRec{peer: string(alice), epoch: 1, complete: 20, es: []tEntry{{key: "z", counter: 3, value: "old but live"}}}))
	wantChanges(t, cs, Change{Peer: alice, Added: []string{"z"}, Cause: CauseRemote})
}

func TestLocalPendingTombstonesAreBounded(t *testing.T) {
	a := newStoreLim(t, alice, 1, Limits{MaxKeysPerPeer: 2})
	for _, k := range []string{"a", "b", "c"} {
		mustSet(t, a, at(0), k, "")
		mustDelete(t, a, at(0), k)
	}
	var d decoded
	if err := decode(a.EncodeDelta(), &a.lim, &d, ""); err != nil {
		t.Fatal(err)
	}
	if len(d.ents) != 2 || string(d.key(&d.ents[0])) != "b" || string(d.key(&d.ents[1])) != "c" {
		t.Fatalf("delta carries %d entries, want the 2 newest tombstones", len(d.ents))
	}
}

func TestDepartedPeersAreBounded(t *testing.T) {
	s := newStoreLim(t, bob, 1, Limits{MaxPeers: 3})
	ids := []PeerID{"p1", "p2", "p3", "p4", "p5"}
	for i, id := range ids {
		mustApply(t, s, at(i), id, tDelta(7, tEntry{key: "k", counter: 1, value: "v"}))
		s.Remove(id, CauseLeave)
	}
	if len(s.gone.m) != 3 || len(s.gone.q) > 2*3+16 {
		t.Fatalf("remembers %d departed peers (queue %d), want 3", len(s.gone.m), len(s.gone.q))
	}
	// The oldest departures are forgotten: a late message of p1 is accepted again; p5's is not.
	late := tDelta(7, tEntry{key: "k", counter: 2, value: "late"})
	if cs := mustApply(t, s, at(10), "p1", late); len(cs) != 1 {
		t.Fatalf("p1 (forgotten departure): %+v", cs)
	}
	if cs := mustApply(t, s, at(10), "p5", late); cs != nil {
		t.Fatalf("p5 (remembered departure): %+v", cs)
	}
	// Churn keeps the memory bounded.
	for i := range 100 {
		id := PeerID(fmt.Sprintf("churn%d", i))
		_ = s.Heard(at(20+i), id)
		s.Remove(id, CauseTimeout)
	}
	if len(s.gone.m) != 3 || len(s.gone.q) > 2*3+16 {
		t.Fatalf("after churn: %d departed, queue %d", len(s.gone.m), len(s.gone.q))
	}
}

func TestApplyResultsAreIndependent(t *testing.T) {
	b := newStore(t, bob, 1)
	var kept [][]Change
	for i := range 3*oneChangeSlab + 5 {
		key := fmt.Sprintf("k%03d", i%20)
		cs := mustApply(t, b, at(i), alice, tDelta(1, tEntry{key: key, counter: uint64(i + 1), value: "v"}))
		kept = append(kept, cs)
	}
	for i, cs := range kept {
		want := fmt.Sprintf("k%03d", i%20)
		if len(cs) != 1 || cs[0].Peer != alice || len(cs[0].Added)+len(cs[0].Updated) != 1 {
			t.Fatalf("result %d = %+v", i, cs)
		}
		if got := append(cs[0].Added, cs[0].Updated...); got[0] != want {
			t.Fatalf("result %d changed to %v, want %s", i, got, want)
		}
	}
	// A caller appending to one result never writes into another.
	_ = append(kept[0], Change{Peer: "x"})
	_ = append(kept[0][0].Added, "x")
	if kept[1][0].Peer != alice || len(kept[1][0].Added) != 1 || kept[1][0].Added[0] != "k001" {
		t.Fatalf("append to one result changed the next: %+v", kept[1])
	}
}

// TestBlockSizes keeps the single-peer blocks at the size classes their comments claim
// (their value arrays take what would otherwise be padding).
func TestBlockSizes(t *testing.T) {
	if n := unsafe.Sizeof(block2{}); n != 288 {
		t.Errorf("block2 is %d bytes, want 288", n)
	}
	if n := unsafe.Sizeof(block4{}); n != 480 {
		t.Errorf("block4 is %d bytes, want 480", n)
	}
}

// TestKeysSharedAcrossPeers: keys are interned across peers (apply.go, internTable); many
// peers with common and distinct keys, long and empty keys, through Apply and ApplyTrusted,
// still come out exactly as written.
func TestKeysSharedAcrossPeers(t *testing.T) {
	const n = 300
	want := map[PeerID]map[string]string{}
	per := newStoreLim(t, "rx", 1, Limits{MaxPeers: n + 2})
	hub := newStoreLim(t, "hub", 1, Limits{MaxPeers: n + 2})
	for i := range n {
		id := PeerID(fmt.Sprintf("peer-%03d", i))
		a := newStore(t, id, epochMs)
		kv := map[string]string{
			"cursor":                     fmt.Sprintf("c%d", i),
			fmt.Sprintf("own-%d", i):     "x",
			strings.Repeat("k", 40+i%20): fmt.Sprint(i),
		}
		if i%7 == 0 {
			kv[""] = "empty key"
		}
		for k, v := range kv {
			mustSet(t, a, t0, k, v)
		}
		want[id] = kv
		mustApply(t, per, t0, id, a.EncodeSnapshot())
		mustApply(t, hub, t0, id, a.EncodeSnapshot())
	}
	trusted := newStoreLim(t, "rx2", 1, Limits{MaxPeers: n + 2})
	if _, err := trusted.ApplyTrusted(t0, hub.EncodeSnapshot()); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Store{"per-author": per, "trusted": trusted} {
		for id, kv := range want {
			if got := strState(s.State(id)); !maps.Equal(got, kv) {
				t.Fatalf("%s: %s holds %v, want %v", name, id, got, kv)
			}
		}
		if err := checkInvariants(s); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func TestLimitsMergeTakesZeroWireFieldsAndRefusesConflicts(t *testing.T) {
	got, err := Limits{MaxValueSize: 4096, MaxPeers: 10}.Merge(Limits{MaxKeyLen: 16, MaxValueSize: 4096, MaxPeers: 99})
	if err != nil || got != (Limits{MaxKeyLen: 16, MaxValueSize: 4096, MaxPeers: 10}) {
		t.Errorf("Merge = %+v, %v", got, err)
	}
	if _, err := (Limits{MaxKeysPerPeer: 8}).Merge(Limits{MaxKeysPerPeer: 32}); err == nil || !strings.Contains(err.Error(), "MaxKeysPerPeer") {
		t.Errorf("conflicting MaxKeysPerPeer: %v", err)
	}
}
