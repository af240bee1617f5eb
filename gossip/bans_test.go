package gossip

import (
	"testing"
	"time"
)

// The Nth rejection bans for base × 2^(N−1), capped at maxBan; N is
// forgotten once the author has been unbanned for maxBan; a ban never
// shortens.
func TestBansDoubleCapAndForget(t *testing.T) {
	const base = time.Second
	b := newBans(base)
	p := randomPeerID(t)
	t0 := time.Unix(1000, 0)
	now := t0
	for n := 1; n <= 12; n++ {
		b.reject(p, now)
		want := min(base<<(n-1), maxBan)
		if !b.banned(p, now.Add(want-time.Millisecond)) || b.banned(p, now.Add(want)) {
			t.Fatalf("rejection %d: ban is not %v", n, want)
		}
		now = now.Add(want) // the next offence right after the ban ended
	}
	// Quiet for maxBan after the ban: the count starts again.
	now = now.Add(maxBan)
	b.reject(p, now)
	if b.banned(p, now.Add(base)) {
		t.Fatalf("count not forgotten after %v unbanned", maxBan)
	}
	if s := b.score(randomPeerID(t)); s != 0 {
		t.Errorf("score of a stranger %v", s)
	}
}
