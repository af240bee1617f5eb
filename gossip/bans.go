package gossip

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Bans for invalid messages (docs/PROTOCOL.md 2.6.2, "What scoring
// promises"). pubsub's P4 penalises the peer that delivered a rejected
// message, −10 × count², with the count decaying by 0.926 a second: three
// invalid messages graylisted their sender for under a second (−90, then
// −77), the next three again, and an author graylisted at one node still
// got in through any honest relay. So every node also keeps its own
// record of the authors whose signed messages it rejected (the signature
// binds the author; an honest relay never forwards a message that fails
// these deterministic checks, so the author is the one to blame):
//
//   - the Nth rejected message of an author bans it for
//     InvalidBan × 2^(N−1) (10 s, 20 s, 40 s, …), at most maxBan, from
//     that rejection;
//   - while banned, its peer score includes −1000 (P5), far below the
//     graylist threshold: its RPCs are dropped unread, and it gets none of
//     our messages;
//   - while banned, its messages are ignored whoever relays them (the
//     validator returns Ignore: no penalty for the relay), and relayed
//     copies in Fetch replies are dropped;
//   - N is forgotten once the author has been unbanned for maxBan.
//
// At most maxBanned authors are tracked; when full, those whose record
// may be forgotten go first, and a new offender beyond that gets only P4.
type bans struct {
	base time.Duration

	mu sync.Mutex
	m  map[peer.ID]ban
}

type ban struct {
	n     int       // rejected messages so far
	until time.Time // banned before this
}

const (
	maxBan       = 10 * time.Minute
	maxBanned    = 4096
	banScore     = -1000
	maxBanDouble = 16 // 2^16 × base is far beyond maxBan anyway
)

func newBans(base time.Duration) *bans {
	return &bans{base: base, m: make(map[peer.ID]ban)}
}

// reject records a rejected message signed by p at now.
func (b *bans) reject(p peer.ID, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.m[p]
	if !ok && len(b.m) >= maxBanned {
		for q, x := range b.m {
			if now.Sub(x.until) >= maxBan {
				delete(b.m, q)
			}
		}
		if len(b.m) >= maxBanned {
			return
		}
	}
	if ok && now.Sub(e.until) >= maxBan {
		e = ban{}
	}
	e.n++
	d := min(b.base<<min(e.n-1, maxBanDouble), maxBan)
	if until := now.Add(d); until.After(e.until) {
		e.until = until
	}
	b.m[p] = e
}

// banned reports whether p is banned at now.
func (b *bans) banned(p peer.ID, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.m[p]
	return ok && now.Before(e.until)
}

// score is p's part of the application-specific score (P5).
func (b *bans) score(p peer.ID) float64 {
	if b.banned(p, time.Now()) {
		return banScore
	}
	return 0
}
