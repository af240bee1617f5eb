package ephemeral

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"time"
)

// TestPropertyReceiversConverge: several authors do random Set/Delete/restart (new epoch)
// and publish deltas and snapshots; several receivers get them in random order, with
// duplicates and drops, then a later snapshot resend of every author. Every receiver must
// then hold exactly each author's own final state (the oracle), stay there when old
// messages are replayed, and hand the same state off through a multi-peer snapshot.
func TestPropertyReceiversConverge(t *testing.T) {
	runs := 400
	if testing.Short() {
		runs = 50
	}
	variants := []struct {
		name   string
		lim    Limits
		keys   int
		pinned bool
	}{
		{"default limits", Limits{}, 6, false},
		// Far fewer key slots than keys in use: exercises limit errors, tombstone caps and
		// the floor they leave behind.
		{"tight limits", Limits{MaxKeysPerPeer: 2}, 8, false},
		// One key set once per run while the other slot churns: a late copy of that key
		// falls below a floor raised by forgotten tombstones, and only the final snapshot
		// can bring it back.
		{"tight limits with a long-lived key", Limits{MaxKeysPerPeer: 2}, 8, true},
	}
	for vi, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			for seed := range runs {
				convergeOnce(t, uint64(seed), uint64(vi), v.lim, v.keys, v.pinned)
			}
		})
	}
}

type propMsg struct {
	author PeerID
	data   []byte
}

func convergeOnce(t *testing.T, seed, stream uint64, lim Limits, nkeys int, pinned bool) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, stream))
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d: %s", seed, fmt.Sprintf(format, args...))
	}
	newS := func(id PeerID, epoch uint64) *Store {
		s, err := New(Config{Self: id, Epoch: epoch, Timeout: time.Hour, Limits: lim})
		if err != nil {
			fail("New: %v", err)
		}
		return s
	}
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}[:nkeys]
	newAuthor := func(id PeerID, epoch uint64) *Store {
		s := newS(id, epoch)
		if pinned {
			mustSet(t, s, t0, "a", "pinned")
		}
		return s
	}
	if pinned {
		keys = keys[1:]
	}

	ids := []PeerID{"p0", "p1", "p2"}
	authors := make([]*Store, len(ids))
	for i, id := range ids {
		authors[i] = newAuthor(id, 1+uint64(r.IntN(3)))
	}
	var msgs []propMsg
	now := t0
	steps := 30 + r.IntN(90)
	for step := range steps {
		now = now.Add(time.Millisecond)
		i := r.IntN(len(ids))
		a := authors[i]
		switch x := r.IntN(100); {
		case x < 45:
			_, err := a.Set(now, keys[r.IntN(len(keys))], fmt.Appendf(nil, "v%d", step))
			if err != nil && !errors.Is(err, ErrTooManyKeys) {
				fail("Set: %v", err)
			}
		case x < 65:
			k := keys[r.IntN(len(keys))]
			if live := a.me.live; live > 0 && r.IntN(4) > 0 { // mostly a key that exists
				for _, e := range a.me.entries {
					if !e.tomb && !(pinned && e.key == "a") {
						if k = e.key; r.IntN(live) == 0 {
							break
						}
					}
				}
			}
			mustDelete(t, a, now, k)
		case x < 70: // restart: unsent changes are lost, the epoch grows
			authors[i] = newAuthor(ids[i], a.Epoch()+1+uint64(r.IntN(3)))
		case x < 92:
			if d := a.EncodeDelta(); d != nil {
				msgs = append(msgs, propMsg{ids[i], d})
			}
		default:
			msgs = append(msgs, propMsg{ids[i], a.EncodeSnapshot(ids[i])})
		}
	}

	receivers := make([]*Store, 3)
	for ri := range receivers {
		s := newS(PeerID(fmt.Sprintf("r%d", ri)), 1)
		receivers[ri] = s
		var deliveries []propMsg
		for _, m := range msgs {
			for range r.IntN(3) { // 0: dropped, 1, or 2: duplicated
				deliveries = append(deliveries, m)
			}
		}
		r.Shuffle(len(deliveries), func(a, b int) { deliveries[a], deliveries[b] = deliveries[b], deliveries[a] })
		for _, m := range deliveries {
			now = now.Add(time.Millisecond)
			_, err := s.Apply(now, m.author, m.data)
			if ierr := checkInvariants(s); ierr != nil {
				fail("receiver %d: %v", ri, ierr)
			}
			if err != nil {
				// Out-of-order delivery can leave stale keys that a new key would push
				// over a tight limit; the snapshot resend below repairs it.
				if !errors.Is(err, ErrTooManyKeys) || lim.MaxKeysPerPeer == 0 {
					fail("Apply: %v", err)
				}
			}
		}
		for i, a := range authors {
			now = now.Add(time.Millisecond)
			if _, err := s.Apply(now, ids[i], a.EncodeSnapshot(ids[i])); err != nil {
				fail("receiver %d: Apply(final snapshot of %s): %v", ri, ids[i], err)
			}
		}
		checkOracle(t, seed, s, ids, authors)
		// Replaying old messages changes nothing now.
		for range 20 {
			if len(msgs) == 0 {
				break
			}
			m := msgs[r.IntN(len(msgs))]
			if cs, err := s.Apply(now, m.author, m.data); err != nil || cs != nil {
				fail("receiver %d: replay after convergence: %+v, %v", ri, cs, err)
			}
		}
		checkOracle(t, seed, s, ids, authors)
	}

	// Hand-off: a multi-peer snapshot of a receiver rebuilds the same state elsewhere.
	fresh := newS("fresh", 1)
	if _, err := fresh.ApplyTrusted(now, receivers[0].EncodeSnapshot()); err != nil {
		fail("ApplyTrusted: %v", err)
	}
	checkOracle(t, seed, fresh, ids, authors)
}

func checkOracle(t *testing.T, seed uint64, s *Store, ids []PeerID, authors []*Store) {
	t.Helper()
	for i, a := range authors {
		got, want := strState(s.State(ids[i])), strState(a.State(ids[i]))
		if !maps.Equal(got, want) {
			t.Fatalf("seed %d: %s holds %s = %v, author has %v", seed, s.Self(), ids[i], got, want)
		}
		gv, _ := s.Version(ids[i])
		wv, _ := a.Version(ids[i])
		if gv != wv {
			t.Fatalf("seed %d: %s holds %s at %v, author is at %v", seed, s.Self(), ids[i], gv, wv)
		}
	}
}
