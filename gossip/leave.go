package gossip

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/convene-p2p/convene/room/roomnet"
)

// LeaveProtocol is the libp2p protocol of the direct goodbye: Publish of a
// leave message also sends it over one stream of this protocol to every
// directly connected room peer and waits for their acknowledgements, so
// that a node that leaves and exits at once is still seen leaving
// (docs/PROTOCOL.md, "Goodbye"). Version 2 carries the goodbye signed by
// its author, so that a receiver can pass it on to members the leaver is
// not connected to; a peer that only speaks LeaveProtocolV1 gets the
// version 1 request.
const LeaveProtocol protocol.ID = "/convene/leave/2.0.0"

// LeaveProtocolV1 is the first version of the goodbye protocol: the
// envelope alone, attributed to the stream's remote peer. Still served and
// used for peers without LeaveProtocol.
const LeaveProtocolV1 protocol.ID = "/convene/leave/1.0.0"

// Flags of a version 2 goodbye request.
const (
	// leavePassOn asks the receiver to pass the goodbye on to its own room
	// peers (once per goodbye, with the flag kept): the leaver has heard
	// members it is not directly connected to.
	leavePassOn byte = 1 << 0
)

// recentAuthor is how long a member heard from counts as one the leaver
// should reach with its goodbye; goodbyeMemory is how long a receiver
// remembers a goodbye (to answer copies and pass it on once), and
// maxGoodbyes bounds how many it remembers per room.
const (
	recentAuthor  = 2 * time.Minute
	goodbyeMemory = time.Minute
	maxGoodbyes   = 1024
)

// leaveTimeout bounds the direct delivery of a goodbye: on the client all
// peers together (unless Publish's context ends earlier), on the server one
// exchange.
const leaveTimeout = 2 * time.Second

// Goodbye reply statuses.
const (
	leaveOK        byte = 0 // queued for the room (Next)
	leaveNotInRoom byte = 1 // the server has not joined the room
	leaveInvalid   byte = 2 // the goodbye failed validation
	leaveBusy      byte = 3 // over the concurrency bound, the author's rate, or the queue is full
)

// encodeLeaveRequest encodes a goodbye for roomID: uvarint length, room ID,
// uvarint length, envelope.
func encodeLeaveRequest(roomID string, envelope []byte) []byte {
	b := make([]byte, 0, uvarintLen(uint64(len(roomID)))+len(roomID)+uvarintLen(uint64(len(envelope)))+len(envelope))
	b = appendUvarint(b, uint64(len(roomID)))
	b = append(b, roomID...)
	b = appendUvarint(b, uint64(len(envelope)))
	return append(b, envelope...)
}

// maxLeaveRequest is the largest valid request for an envelope limit.
func maxLeaveRequest(maxSize int) int {
	return uvarintLen(MaxRoomIDLen) + MaxRoomIDLen + uvarintLen(uint64(maxSize)) + maxSize
}

// decodeLeaveRequest decodes a whole request (the client half-closes after
// it) with an envelope of at most maxSize bytes; it never panics. The
// envelope is returned undecoded (it aliases b).
func decodeLeaveRequest(b []byte, maxSize int) (roomID string, envelope []byte, err error) {
	d := decoder{b: b}
	n, err := d.length(1, MaxRoomIDLen, "room ID")
	if err != nil {
		return "", nil, err
	}
	roomID = string(d.take(n))
	if err := checkRoomID(roomID); err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if n, err = d.length(1, maxSize, "envelope"); err != nil {
		return "", nil, err
	}
	envelope = d.take(n)
	if len(d.b) != 0 {
		return "", nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	return roomID, envelope, nil
}

// encodeLeaveRequest2 encodes a version 2 goodbye for roomID: uvarint
// length, room ID, flags byte, uvarint length, the goodbye signed by its
// author (pubsub's wire form of one message, see signedForm).
func encodeLeaveRequest2(roomID string, flags byte, signed []byte) []byte {
	b := make([]byte, 0, uvarintLen(uint64(len(roomID)))+len(roomID)+1+uvarintLen(uint64(len(signed)))+len(signed))
	b = appendUvarint(b, uint64(len(roomID)))
	b = append(b, roomID...)
	b = append(b, flags)
	b = appendUvarint(b, uint64(len(signed)))
	return append(b, signed...)
}

// maxLeaveRequest2 is the largest valid version 2 request for an envelope
// limit.
func maxLeaveRequest2(maxSize int) int {
	return uvarintLen(MaxRoomIDLen) + MaxRoomIDLen + 1 + uvarintLen(uint64(maxSize+relayOverhead)) + maxSize + relayOverhead
}

// decodeLeaveRequest2 decodes a whole version 2 request whose envelope is
// at most maxSize bytes (the signed message at most maxSize +
// relayOverhead); it never panics. The signed message is returned
// unverified (it aliases b): openSigned checks it.
func decodeLeaveRequest2(b []byte, maxSize int) (roomID string, flags byte, signed []byte, err error) {
	d := decoder{b: b}
	n, err := d.length(1, MaxRoomIDLen, "room ID")
	if err != nil {
		return "", 0, nil, err
	}
	roomID = string(d.take(n))
	if err := checkRoomID(roomID); err != nil {
		return "", 0, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(d.b) == 0 {
		return "", 0, nil, fmt.Errorf("%w: no flags", ErrMalformed)
	}
	flags = d.b[0]
	d.b = d.b[1:]
	if flags&^leavePassOn != 0 {
		return "", 0, nil, fmt.Errorf("%w: unknown goodbye flags %#x", ErrMalformed, flags)
	}
	if n, err = d.length(1, maxSize+relayOverhead, "signed goodbye"); err != nil {
		return "", 0, nil, err
	}
	signed = d.take(n)
	if len(d.b) != 0 {
		return "", 0, nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	return roomID, flags, signed, nil
}

// signGoodbye returns data (a leave envelope) as a message on topic
// signed by the local peer exactly as pubsub signs under StrictSign (from,
// data, a random seqno, topic, signature; the key only if the peer ID
// does not embed it), so that any member can verify it with openSigned
// whoever passes it on.
func (r *Router) signGoodbye(topic string, data []byte) ([]byte, error) {
	key := r.h.Peerstore().PrivKey(r.self)
	if key == nil {
		return nil, errors.New("gossip: no private key for the local peer")
	}
	seq := make([]byte, 8)
	if _, err := rand.Read(seq); err != nil {
		return nil, err
	}
	m := &pb.Message{From: []byte(r.self), Data: data, Seqno: seq, Topic: &topic}
	unsigned, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	if m.Signature, err = key.Sign(append([]byte(pubsub.SignPrefix), unsigned...)); err != nil {
		return nil, err
	}
	if pk, err := r.self.ExtractPublicKey(); err != nil || pk == nil {
		if m.Key, err = crypto.MarshalPublicKey(key.GetPublic()); err != nil {
			return nil, err
		}
	}
	return proto.Marshal(m)
}

// goodbyeKey names a goodbye: its author and epoch (a member says goodbye
// once per epoch; its GossipSub copy and its direct copies share the key).
type goodbyeKey struct {
	author peer.ID
	epoch  uint64
}

// goodbyeSeen is what a Topic remembers of a goodbye: who gave it to us
// (they have it: it is not passed on to them) and when.
type goodbyeSeen struct {
	from     map[peer.ID]bool
	at       time.Time
	streamed bool // a copy came over a goodbye stream
	passed   bool // passed on already
}

// goodbyes remembers recent goodbyes and recently heard authors (for the
// leaver's decision to ask for its goodbye to be passed on). Safe for
// concurrent use.
type goodbyes struct {
	mu      sync.Mutex
	seen    map[goodbyeKey]*goodbyeSeen
	order   []goodbyeKey // oldest first
	authors map[peer.ID]time.Time
	max     int // bound of authors
}

func newGoodbyes(maxAuthors int) *goodbyes {
	return &goodbyes{seen: make(map[goodbyeKey]*goodbyeSeen), authors: make(map[peer.ID]time.Time), max: maxAuthors}
}

// heard records a message of author (not a goodbye) at now.
func (g *goodbyes) heard(author peer.ID, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.authors[author]; !ok && len(g.authors) >= g.max {
		for p, at := range g.authors {
			if now.Sub(at) >= recentAuthor {
				delete(g.authors, p)
			}
		}
		if len(g.authors) >= g.max {
			return
		}
	}
	g.authors[author] = now
}

// beyond reports whether an author heard within recentAuthor (and not
// gone since) is missing from direct.
func (g *goodbyes) beyond(direct []peer.ID, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for p, at := range g.authors {
		if now.Sub(at) >= recentAuthor {
			delete(g.authors, p)
			continue
		}
		if !slices.Contains(direct, p) {
			return true
		}
	}
	return false
}

// got records that from gave us the goodbye k at now, over a goodbye
// stream or (stream false) through GossipSub. It reports whether it is the
// first copy that came over a stream (the one queued for the room; the
// GossipSub copy is queued by the reader as any message), and whether it
// should be passed on now (asked for, and not passed on before).
func (g *goodbyes) got(k goodbyeKey, from peer.ID, stream, passOn bool, now time.Time) (first, pass bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.authors, k.author)
	for len(g.order) > 0 {
		old := g.order[0]
		if e := g.seen[old]; e != nil && now.Sub(e.at) < goodbyeMemory && len(g.order) < maxGoodbyes {
			break
		}
		delete(g.seen, old)
		g.order = g.order[1:]
	}
	e := g.seen[k]
	if e == nil {
		e = &goodbyeSeen{from: make(map[peer.ID]bool), at: now}
		g.seen[k] = e
		g.order = append(g.order, k)
	}
	e.from[from] = true
	if stream && !e.streamed {
		e.streamed, first = true, true
	}
	if passOn && !e.passed {
		e.passed, pass = true, true
	}
	return first, pass
}

// holders returns the peers that gave us goodbye k.
func (g *goodbyes) holders(k goodbyeKey) map[peer.ID]bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[peer.ID]bool)
	if e := g.seen[k]; e != nil {
		for p := range e.from {
			out[p] = true
		}
	}
	return out
}

// decodeLeaveReply decodes a whole reply: one known status byte.
func decodeLeaveReply(b []byte) (byte, error) {
	if len(b) != 1 {
		return 0, fmt.Errorf("%w: reply of %d bytes", ErrMalformed, len(b))
	}
	switch b[0] {
	case leaveOK, leaveNotInRoom, leaveInvalid, leaveBusy:
		return b[0], nil
	}
	return 0, fmt.Errorf("%w: unknown reply status %d", ErrMalformed, b[0])
}

// deliverLeave sends the goodbye envelope data over LeaveProtocol (or
// LeaveProtocolV1) to every peer in Peers(), concurrently, and waits for
// every answer, at most leaveTimeout, until ctx ends or the Topic is
// closed. It asks them to pass it on when this peer has recently heard
// members it is not directly connected to. Failures are logged only: the
// goodbye also went out over GossipSub.
func (t *Topic) deliverLeave(ctx context.Context, data []byte) {
	peers := t.pt.ListPeers()
	if len(peers) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, leaveTimeout)
	defer cancel()
	stop := context.AfterFunc(t.ctx, cancel) // Close aborts the delivery
	defer stop()

	req1 := encodeLeaveRequest(t.roomID, data)
	var req2 []byte
	if signed, err := t.r.signGoodbye(t.name, data); err != nil {
		t.r.log.Debug("goodbye not signed for relaying", "room", t.roomID, "err", err)
	} else {
		var flags byte
		if t.bye.beyond(peers, time.Now()) {
			flags |= leavePassOn
		}
		req2 = encodeLeaveRequest2(t.roomID, flags, signed)
	}
	t.sendGoodbyes(ctx, peers, req2, req1, cLeaveAcked)
}

// sendGoodbyes sends a goodbye to peers concurrently and waits for every
// answer: req2 over LeaveProtocol, or req1 over LeaveProtocolV1 to a peer
// without it (req1 nil: such peers are skipped). Acknowledgements are
// counted in ok.
func (t *Topic) sendGoodbyes(ctx context.Context, peers []peer.ID, req2, req1 []byte, ok counter) {
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, err := t.r.sendLeave(ctx, p, req2, req1)
			switch {
			case err != nil:
				t.r.log.Debug("goodbye not delivered directly", "room", t.roomID, "peer", p, "err", err)
			case status == leaveOK:
				t.count(ok)
			default:
				t.r.log.Debug("goodbye refused", "room", t.roomID, "peer", p, "status", status)
			}
		}()
	}
	wg.Wait()
}

// sendLeave runs the client side of one goodbye exchange: req2 over
// LeaveProtocol, or req1 over LeaveProtocolV1 if the peer only has that
// (either may be nil: that protocol is not tried).
func (r *Router) sendLeave(ctx context.Context, pid peer.ID, req2, req1 []byte) (byte, error) {
	b, err := r.roundTrip(ctx, pid, 1, offer{LeaveProtocol, req2}, offer{LeaveProtocolV1, req1})
	if err != nil {
		return 0, err
	}
	return decodeLeaveReply(b)
}

// handleLeave serves one goodbye stream of either version (handle's
// preamble, then serveLeave).
func (r *Router) handleLeave(s network.Stream) {
	r.handle(s, service{
		timeout: leaveTimeout,
		sem:     r.leaveSem,
		busy:    leaveBusy,
		limit: func(p protocol.ID) int {
			if p == LeaveProtocol {
				return maxLeaveRequest2(r.cfg.MaxMessageSize)
			}
			return maxLeaveRequest(r.cfg.MaxMessageSize)
		},
		serve: r.serveLeave,
		bad: func(from peer.ID, err error) {
			r.stats[cLeaveInvalid].Add(1)
			r.log.Debug("bad goodbye request", "from", from, "err", err)
		},
	})
}

// serveLeave answers one goodbye request of the stream's version.
func (r *Router) serveLeave(s network.Stream, req []byte) error {
	from := s.Conn().RemotePeer()
	var status byte
	if s.Protocol() == LeaveProtocol {
		roomID, flags, signed, err := decodeLeaveRequest2(req, r.cfg.MaxMessageSize)
		if err != nil {
			return err
		}
		if t := r.topic(roomID); t == nil {
			status = leaveNotInRoom
		} else {
			status = t.receiveSignedLeave(from, flags, signed)
		}
	} else {
		roomID, data, err := decodeLeaveRequest(req, r.cfg.MaxMessageSize)
		if err != nil {
			return err
		}
		if t := r.topic(roomID); t == nil {
			status = leaveNotInRoom
		} else {
			status = t.receiveLeave(from, data)
		}
	}
	r.reply(s, []byte{status})
	return nil
}

// receiveSignedLeave handles a version 2 goodbye given to us by from: the
// author's own (from is the author) or passed on by another member. The
// signature must verify and the envelope pass the topic checks for its
// author, with kind leave. The first copy is queued for Next (counted in
// LeaveReceived; later copies are acknowledged and dropped) and, if the
// request asks for it, passed on once to our room peers that have not
// given it to us, with the flag kept.
func (t *Topic) receiveSignedLeave(from peer.ID, flags byte, signed []byte) byte {
	author, data, err := openSigned(signed, t.name)
	var m roomnet.Message
	if err == nil {
		m, err = t.r.check(data, author)
	}
	if err == nil && m.Kind != roomnet.KindLeave {
		err = fmt.Errorf("%w: goodbye of kind %v", ErrMalformed, m.Kind)
	}
	if err != nil {
		t.count(cLeaveInvalid)
		t.r.log.Debug("rejected goodbye", "room", t.roomID, "from", from, "err", err)
		return leaveInvalid
	}
	if author == t.self {
		return leaveOK // our own, passed back to us
	}
	k := goodbyeKey{author: author, epoch: m.Epoch}
	first, pass := t.bye.got(k, from, true, flags&leavePassOn != 0, time.Now())
	if !first {
		if pass {
			t.passOn(k, flags, signed)
		}
		return leaveOK
	}
	// The author's bucket pays for the first copy only: copies passed on
	// by others cannot drain it.
	if !t.lim.allow(author, 1, time.Now()) {
		t.count(cRateLimited)
		return leaveBusy
	}
	if !t.q.pushMessage(roomnet.Event{Kind: roomnet.EventMessage, From: roomnet.PeerID(author), Msg: m}) {
		t.count(cDropped)
		return leaveBusy
	}
	t.count(cLeaveReceived)
	if pass {
		t.passOn(k, flags, signed)
	}
	return leaveOK
}

// passOn sends goodbye k (signed by its author) to every room peer that
// has not given it to us, in the background (bounded by leaveTimeout,
// aborted by Close).
func (t *Topic) passOn(k goodbyeKey, flags byte, signed []byte) {
	t.fwdMu.Lock()
	defer t.fwdMu.Unlock()
	if t.fwdClosed {
		return
	}
	t.fwdWG.Add(1)
	go func() {
		defer t.fwdWG.Done()
		have := t.bye.holders(k)
		var to []peer.ID
		for _, p := range t.pt.ListPeers() {
			if p != k.author && !have[p] {
				to = append(to, p)
			}
		}
		if len(to) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(t.ctx, leaveTimeout)
		defer cancel()
		t.count(cLeaveRelayed)
		t.sendGoodbyes(ctx, to, encodeLeaveRequest2(t.roomID, flags, signed), nil, cLeaveRelayAcked)
	}()
}

// receiveLeave validates a goodbye envelope received directly from author
// (the stream's authenticated remote peer) exactly like a topic message
// signed by author, requires kind leave, and queues it for Next. It
// returns the reply status.
func (t *Topic) receiveLeave(author peer.ID, data []byte) byte {
	if !t.lim.allow(author, 1, time.Now()) {
		t.count(cRateLimited)
		return leaveBusy
	}
	m, err := t.r.check(data, author)
	if err == nil && m.Kind != roomnet.KindLeave {
		err = fmt.Errorf("%w: goodbye of kind %v", ErrMalformed, m.Kind)
	}
	if err != nil {
		t.count(cLeaveInvalid)
		t.r.log.Debug("rejected goodbye", "room", t.roomID, "from", author, "err", err)
		return leaveInvalid
	}
	t.bye.got(goodbyeKey{author: author, epoch: m.Epoch}, author, true, false, time.Now())
	if !t.q.pushMessage(roomnet.Event{Kind: roomnet.EventMessage, From: roomnet.PeerID(author), Msg: m}) {
		t.count(cDropped)
		return leaveBusy
	}
	t.count(cLeaveReceived)
	return leaveOK
}
