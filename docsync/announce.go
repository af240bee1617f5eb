package docsync

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/doc"
)

// Head announcements (docs/PROTOCOL.md part 4, "Announcements"): a peer
// publishes, on its namespace's announce topic, the AnnounceDigest and
// heads of every document it changes (local changes only: a peer that got
// the change by sync does not repeat it), coalesced to one per document per
// announceInterval, unless every peer it reaches on the topic syncs the
// document with it already. A peer that tracks the document and, announceGrace
// later, still lacks those heads nudges its session with the announcer
// (a fresh sync state, so a quiet or stalled pair speaks), or, with no
// connection to the announcer, dials it: the new connection's session
// syncs. Bulk data never travels on the topic.

// PubSub is what the service needs of a GossipSub router to announce:
// *pubsub.PubSub has these methods, and so has gossip.ExtraTopics (a
// Router's extra topics). The service registers its validator on the
// announce topic before it joins it, and unregisters it at Close.
type PubSub interface {
	Join(topic string, opts ...pubsub.TopicOpt) (*pubsub.Topic, error)
	RegisterTopicValidator(topic string, val any, opts ...pubsub.ValidatorOpt) error
	UnregisterTopicValidator(topic string) error
}

// AnnounceDigest is the digest an announcement carries for document id:
// SHA-256("convene/docsync/1 announce\x00" ‖ id). It differs from
// DocDigest on purpose: a Have naming DocDigest(sender, id) fetches the
// document (the digest stands for the ID on a session), and an announcement
// reaches every peer on the topic, so what it carries must not. A peer
// that knows the ID computes both; one that does not can match neither to
// anything, and a Have naming an AnnounceDigest is answered Unavailable.
func AnnounceDigest(id string) Digest {
	h := sha256.New()
	h.Write([]byte("convene/docsync/1 announce\x00"))
	h.Write([]byte(id))
	var d Digest
	h.Sum(d[:0])
	return d
}

// maxAnnouncement is the largest valid announcement: version, digest and
// MaxHeads heads.
const maxAnnouncement = 1 + digestLen + binary.MaxVarintLen16 + 32*MaxHeads

const (
	// announceInterval coalesces a document's announcements: at most one
	// per interval, with the heads at the time it is sent (a writer at 100
	// changes/s announces 4 times a second).
	announceInterval = 250 * time.Millisecond
	// announceGrace is how long an announcement of heads we lack waits
	// for the sync already under way to bring them (a direct session
	// delivers a change in milliseconds, and the announcement often
	// arrives first); only then does it nudge the announcer's session, or
	// dial the announcer if there is none.
	announceGrace = time.Second
	// maxPending bounds the announcements waiting for their grace.
	maxPending = 1024
	// dialBackoff: an announcer is dialled at most once per backoff;
	// maxDials bound the dials in flight.
	dialBackoff = 30 * time.Second
	maxDials    = 4
	dialTimeout = 10 * time.Second
)

// pendKey is one (document, announcer) waiting for its grace.
type pendKey struct {
	id   string
	from peer.ID
}

type pendingAnn struct {
	t     *tracked
	heads doc.Heads
	due   time.Time
}

// joinAnnounce registers the announcement validator, joins and subscribes
// the announce topic, and starts the announcement goroutines (New).
func (s *Service) joinAnnounce() error {
	name := AnnounceTopic(s.cfg.Namespace)
	if err := s.cfg.PubSub.RegisterTopicValidator(name, pubsub.ValidatorEx(s.validateAnnouncement), pubsub.WithValidatorInline(true)); err != nil {
		return fmt.Errorf("docsync: validator of %s: %w", name, err)
	}
	t, err := s.cfg.PubSub.Join(name)
	if err != nil {
		_ = s.cfg.PubSub.UnregisterTopicValidator(name)
		return fmt.Errorf("docsync: join %s: %w", name, err)
	}
	sub, err := t.Subscribe()
	if err != nil {
		_ = t.Close()
		_ = s.cfg.PubSub.UnregisterTopicValidator(name)
		return fmt.Errorf("docsync: subscribe %s: %w", name, err)
	}
	s.topic = t
	s.wg.Add(3)
	go s.announcements(sub)
	go s.announcer()
	go s.recheck()
	return nil
}

// validateAnnouncement is the announce topic's validator, at every relay:
// an announcement larger than maxAnnouncement or that does not decode is
// rejected (counted in Stats.BadAnnouncements; the router's peer scoring
// charges the peer that delivered it) and never forwarded.
func (s *Service) validateAnnouncement(_ context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	if from == s.host.ID() {
		return pubsub.ValidationAccept // our own
	}
	if len(m.Data) > maxAnnouncement {
		s.stats.add(&s.stats.badAnnouncements, 1)
		return pubsub.ValidationReject
	}
	a, err := DecodeAnnouncement(m.Data)
	if err != nil {
		s.stats.add(&s.stats.badAnnouncements, 1)
		return pubsub.ValidationReject
	}
	m.ValidatorData = a
	return pubsub.ValidationAccept
}

// queueAnnounce asks the announcer to announce id's heads.
func (s *Service) queueAnnounce(id string) {
	if s.topic == nil {
		return
	}
	s.mu.Lock()
	s.toAnnounce[id] = true
	s.mu.Unlock()
	select {
	case s.annWake <- struct{}{}:
	default:
	}
}

// announcer publishes the queued documents' heads, then waits
// announceInterval before the next round (changes meanwhile are
// coalesced into it).
func (s *Service) announcer() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.annWake:
		}
		s.mu.Lock()
		ts := make([]*tracked, 0, len(s.toAnnounce))
		for id := range s.toAnnounce {
			if t := s.tracked[id]; t != nil {
				ts = append(ts, t)
			}
		}
		clear(s.toAnnounce)
		s.mu.Unlock()
		for _, t := range ts {
			s.announce(t)
		}
		pause := time.NewTimer(announceInterval)
		select {
		case <-s.ctx.Done():
			pause.Stop()
			return
		case <-pause.C:
		}
	}
}

func (s *Service) announce(t *tracked) {
	if !s.cfg.Share("", t.h.ID()) {
		return
	}
	if !s.someoneLacksPair(t.h.ID()) {
		s.stats.add(&s.stats.announcementsSkipped, 1)
		return
	}
	heads := t.h.Heads()
	if len(heads) > MaxHeads {
		heads = heads[:MaxHeads]
	}
	b, err := EncodeAnnouncement(Announcement{Digest: t.adigest, Heads: heads})
	if err != nil {
		return
	}
	if err := s.topic.Publish(s.ctx, b); err == nil {
		s.stats.add(&s.stats.announcementsOut, 1)
	}
}

// someoneLacksPair reports whether a peer we reach directly on the
// announce topic has no open pair for document id with us. If every one
// has, each gets the change over its session anyway, and so does every
// peer beyond them that syncs it with one of them: the announcement would
// only cost its copies (in a full mesh of peers sharing the document,
// announcements are then never sent).
func (s *Service) someoneLacksPair(id string) bool {
	for _, p := range s.topic.ListPeers() {
		s.mu.Lock()
		c := s.peers[p]
		s.mu.Unlock()
		if c == nil || !c.ready() {
			return true
		}
		c.mu.Lock()
		_, ok := c.pairs[id]
		c.mu.Unlock()
		if !ok {
			return true
		}
	}
	return false
}

// announcements reads the announce topic: an announcement of a tracked
// document whose heads this peer lacks waits announceGrace (recheck).
func (s *Service) announcements(sub *pubsub.Subscription) {
	defer s.wg.Done()
	defer sub.Cancel()
	for {
		m, err := sub.Next(s.ctx)
		if err != nil {
			return
		}
		from := m.GetFrom()
		if from == s.host.ID() || from == "" {
			continue // ours, or unsigned (an app's pubsub without StrictSign)
		}
		a, ok := m.ValidatorData.(Announcement)
		if !ok {
			if a, err = DecodeAnnouncement(m.Data); err != nil {
				s.stats.add(&s.stats.badAnnouncements, 1)
				continue
			}
		}
		s.stats.add(&s.stats.announcementsIn, 1)
		s.mu.Lock()
		t := s.tracked[s.adigests[a.Digest]]
		s.mu.Unlock()
		if t == nil || t.h.Contains(a.Heads) {
			continue
		}
		k := pendKey{t.h.ID(), from}
		s.mu.Lock()
		if p := s.pending[k]; p != nil {
			p.heads = a.Heads
		} else if len(s.pending) < maxPending {
			s.pending[k] = &pendingAnn{t: t, heads: a.Heads, due: time.Now().Add(announceGrace)}
		}
		s.mu.Unlock()
	}
}

// recheck acts on the announcements whose grace ran out with their heads
// still missing: it nudges the announcer's session, or dials the
// announcer if it is not connected.
func (s *Service) recheck() {
	defer s.wg.Done()
	tick := time.NewTicker(announceGrace / 4)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		type due struct {
			k pendKey
			p *pendingAnn
		}
		var ds []due
		s.mu.Lock()
		for k, p := range s.pending {
			if !now.Before(p.due) {
				ds = append(ds, due{k, p})
				delete(s.pending, k)
			}
		}
		s.mu.Unlock()
		for _, d := range ds {
			if s.trackedDoc(d.k.id) != d.p.t || d.p.t.h.Contains(d.p.heads) {
				continue
			}
			s.chase(d.k.from, d.k.id, d.p.t)
		}
	}
}

// chase gets the heads announcer p announced for document id: a nudge of
// its session, or a dial if it is not connected. A connection without a
// session open yet needs nothing: the session's Have carries our heads.
func (s *Service) chase(p peer.ID, id string, t *tracked) {
	s.mu.Lock()
	c := s.peers[p]
	s.mu.Unlock()
	if c != nil && c.ready() {
		c.nudge(id, t)
		s.stats.add(&s.stats.announceNudges, 1)
		return
	}
	if s.host.Network().Connectedness(p) == network.Connected {
		return
	}
	now := time.Now()
	s.mu.Lock()
	if s.closed || s.dials >= maxDials || now.Sub(s.dialed[p]) < dialBackoff {
		s.mu.Unlock()
		return
	}
	if len(s.dialed) >= maxPending {
		for q, at := range s.dialed {
			if now.Sub(at) >= dialBackoff {
				delete(s.dialed, q)
			}
		}
	}
	s.dialed[p] = now
	s.dials++
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, dialTimeout)
		defer cancel()
		// At the peerstore's addresses (a routed host would also ask its
		// DHT; p2p's host is not one).
		err := s.host.Connect(ctx, peer.AddrInfo{ID: p})
		s.mu.Lock()
		s.dials--
		s.mu.Unlock()
		if err != nil {
			s.cfg.Logger.Debug("announcer not reachable", "peer", p, "err", err)
			return
		}
		s.stats.add(&s.stats.announceDials, 1)
	}()
}
