package gossip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/convene-p2p/convene/room/roomnet"
)

// FetchProtocol is the libp2p protocol of the snapshot fetch: one request,
// one reply per stream (docs/PROTOCOL.md, "Fetch"). Version 2 added the
// relayed signed messages of the other members.
const FetchProtocol protocol.ID = "/convene/fetch/2.0.0"

// Bounds of the relayed part of a fetch reply: the server sends relayed
// messages while they fit in MaxRelayBytes (whole messages only) and at
// most maxRelayed of them; a relayed message is an envelope of at most
// MaxMessageSize plus pubsub's framing (author, seqno, topic, signature,
// key), bounded by relayOverhead.
const (
	MaxRelayBytes = 1 << 20
	maxRelayed    = 1 << 14
	relayOverhead = 1024
)

// Fetch reply statuses.
const (
	fetchOK        byte = 0
	fetchNotInRoom byte = 1
	fetchRefused   byte = 2
	fetchBusy      byte = 3
)

var (
	// ErrNotInRoom is returned by Fetch when the peer is not in the room.
	ErrNotInRoom = errors.New("gossip: peer is not in the room")
	// ErrRefused is returned by Fetch when the peer refused the request (it
	// serves no state, or is busy).
	ErrRefused = errors.New("gossip: fetch refused")
)

// maxFetchRequest is the largest valid request: a length byte and a room ID.
const maxFetchRequest = 2 + MaxRoomIDLen

// encodeFetchRequest encodes the request for roomID: uvarint length, ID.
func encodeFetchRequest(roomID string) []byte {
	b := appendUvarint(make([]byte, 0, 2+len(roomID)), uint64(len(roomID)))
	return append(b, roomID...)
}

// decodeFetchRequest decodes a whole request (the client half-closes after
// it); it never panics.
func decodeFetchRequest(b []byte) (string, error) {
	d := decoder{b: b}
	n, err := d.length(1, MaxRoomIDLen, "room ID")
	if err != nil {
		return "", err
	}
	id := string(d.take(n))
	if len(d.b) != 0 {
		return "", fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	if err := checkRoomID(id); err != nil {
		return "", fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return id, nil
}

// encodeFetchReply encodes a reply: the status byte, and for fetchOK the
// uvarint length and the envelope, then the uvarint count of relayed
// messages and each one as uvarint length and bytes. Relayed messages are
// taken in order while they fit: at most maxRelayed, each at most
// maxSize+relayOverhead bytes (larger ones are skipped), MaxRelayBytes in
// all.
func encodeFetchReply(status byte, envelope []byte, relayed [][]byte, maxSize int) []byte {
	if status != fetchOK {
		return []byte{status}
	}
	var keep [][]byte
	total := 0
	for _, r := range relayed {
		if len(keep) == maxRelayed {
			break
		}
		if len(r) == 0 || len(r) > maxSize+relayOverhead {
			continue
		}
		n := uvarintLen(uint64(len(r))) + len(r)
		if total+n > MaxRelayBytes {
			break
		}
		keep = append(keep, r)
		total += n
	}
	b := make([]byte, 0, 1+uvarintLen(uint64(len(envelope)))+len(envelope)+uvarintLen(uint64(len(keep)))+total)
	b = append(b, status)
	b = appendUvarint(b, uint64(len(envelope)))
	b = append(b, envelope...)
	b = appendUvarint(b, uint64(len(keep)))
	for _, r := range keep {
		b = appendUvarint(b, uint64(len(r)))
		b = append(b, r...)
	}
	return b
}

// decodeFetchReply decodes a whole reply (the server closes after it) with
// an envelope of at most maxSize bytes; it never panics. The relayed
// messages are returned undecoded (openSigned checks each).
func decodeFetchReply(b []byte, maxSize int) (status byte, envelope []byte, relayed [][]byte, err error) {
	d := decoder{b: b}
	status, ok := d.byte()
	if !ok {
		return 0, nil, nil, fmt.Errorf("%w: empty reply", ErrMalformed)
	}
	switch status {
	case fetchOK:
		n, err := d.length(1, maxSize, "reply")
		if err != nil {
			return 0, nil, nil, err
		}
		envelope = d.take(n)
		count, err := d.length(0, maxRelayed, "relayed count")
		if err != nil {
			return 0, nil, nil, err
		}
		total := 0
		for range count {
			n, err := d.length(1, maxSize+relayOverhead, "relayed message")
			if err != nil {
				return 0, nil, nil, err
			}
			if total += uvarintLen(uint64(n)) + n; total > MaxRelayBytes {
				return 0, nil, nil, fmt.Errorf("%w: relayed messages over %d bytes", ErrTooLarge, MaxRelayBytes)
			}
			relayed = append(relayed, d.take(n))
		}
	case fetchNotInRoom, fetchRefused, fetchBusy:
	default:
		return 0, nil, nil, fmt.Errorf("%w: unknown reply status %d", ErrMalformed, status)
	}
	if len(d.b) != 0 {
		return 0, nil, nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	return status, envelope, relayed, nil
}

// maxFetchReply is the largest valid reply for an envelope limit.
func maxFetchReply(maxSize int) int {
	return 1 + uvarintLen(uint64(maxSize)) + maxSize + uvarintLen(maxRelayed) + MaxRelayBytes
}

// readAll reads until EOF, failing with ErrTooLarge beyond limit bytes.
func readAll(r io.Reader, limit int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return b, nil
}

// Fetch asks p, over a direct stream of FetchProtocol, for its current state
// in this room, and validates the reply exactly like a topic message
// authored by p (the stream's remote peer, authenticated by the secure
// channel): within MaxMessageSize, a decodable envelope of kind heartbeat or
// hello, presence state within Limits that describes p only. It fails with
// ErrNotInRoom or ErrRefused (the peer's answer), ErrMalformed, ErrTooLarge
// or ErrWrongAuthor (an invalid reply), a stream error, or the context's
// error; at most Config.FetchTimeout after the call.
//
// The reply also carries the other members' signed messages that p relays.
// Each is checked like a topic message of its signer: pubsub's StrictSign
// signature, this room's topic, and the content checks of the validator
// (the relaying peer cannot forge or alter them). Invalid ones are dropped
// and counted in Stats.RelayInvalid; own messages and p's are dropped too.
func (t *Topic) Fetch(ctx context.Context, p roomnet.PeerID) (roomnet.FetchReply, error) {
	if t.closed.Load() {
		return roomnet.FetchReply{}, roomnet.ErrNetworkClosed
	}
	pid := peer.ID(p)
	if pid == t.self {
		return roomnet.FetchReply{}, errors.New("gossip: fetch from self")
	}
	ctx, cancel := context.WithTimeout(ctx, t.r.cfg.FetchTimeout)
	defer cancel()
	stop := context.AfterFunc(t.ctx, cancel) // Close aborts the fetch
	defer stop()

	data, relayed, err := t.r.fetch(ctx, pid, t.roomID)
	if err != nil {
		if t.closed.Load() {
			return roomnet.FetchReply{}, roomnet.ErrNetworkClosed
		}
		return roomnet.FetchReply{}, fmt.Errorf("gossip: fetch %q from %s: %w", t.roomID, pid, err)
	}
	m, err := t.r.check(data, pid)
	if err == nil && m.Kind != roomnet.KindHeartbeat && m.Kind != roomnet.KindHello {
		err = fmt.Errorf("%w: reply of kind %v", ErrMalformed, m.Kind)
	}
	if err != nil {
		t.count(cFetchInvalid)
		t.r.bans.reject(pid, time.Now())
		return roomnet.FetchReply{}, fmt.Errorf("gossip: fetch %q from %s: invalid reply: %w", t.roomID, pid, err)
	}
	reply := roomnet.FetchReply{State: m}
	for _, b := range relayed {
		ev, err := t.openRelayed(b)
		if err != nil {
			t.count(cRelayInvalid)
			t.r.log.Debug("invalid relayed message", "room", t.roomID, "via", pid, "err", err)
			continue
		}
		if peer.ID(ev.From) == t.self || peer.ID(ev.From) == pid {
			continue
		}
		t.count(cRelayAccepted)
		// A member known only through a relay is one this peer is not
		// connected to: its goodbye must be passed on (deliverLeave).
		t.bye.heard(peer.ID(ev.From), time.Now())
		reply.Relayed = append(reply.Relayed, ev)
	}
	return reply, nil
}

// openRelayed verifies one relayed message and decodes it into the event
// a topic message of its signer would have been.
func (t *Topic) openRelayed(b []byte) (roomnet.Event, error) {
	from, data, err := openSigned(b, t.name)
	if err != nil {
		return roomnet.Event{}, err
	}
	if t.r.bans.banned(from, time.Now()) {
		return roomnet.Event{}, fmt.Errorf("%w: relayed message of a banned author", ErrMalformed)
	}
	m, err := t.r.check(data, from)
	if err != nil {
		t.r.bans.reject(from, time.Now()) // validly signed by from, and invalid
		return roomnet.Event{}, err
	}
	switch m.Kind {
	case roomnet.KindHello, roomnet.KindHeartbeat, roomnet.KindDelta:
	default:
		return roomnet.Event{}, fmt.Errorf("%w: relayed message of kind %v", ErrMalformed, m.Kind)
	}
	return roomnet.Event{Kind: roomnet.EventMessage, From: roomnet.PeerID(from), Msg: m, Signed: b}, nil
}

// fetch runs the client side of one exchange and returns the envelope and
// the relayed messages (unverified).
func (r *Router) fetch(ctx context.Context, pid peer.ID, roomID string) ([]byte, [][]byte, error) {
	b, err := r.roundTrip(ctx, pid, maxFetchReply(r.cfg.MaxMessageSize), offer{FetchProtocol, encodeFetchRequest(roomID)})
	if err != nil {
		return nil, nil, err
	}
	status, envelope, relayed, err := decodeFetchReply(b, r.cfg.MaxMessageSize)
	if err != nil {
		return nil, nil, err
	}
	switch status {
	case fetchNotInRoom:
		return nil, nil, ErrNotInRoom
	case fetchRefused:
		return nil, nil, ErrRefused
	case fetchBusy:
		return nil, nil, fmt.Errorf("%w: busy", ErrRefused)
	}
	return envelope, relayed, nil
}

// handleFetch serves one Fetch stream (handle's preamble, then
// serveFetch).
func (r *Router) handleFetch(s network.Stream) {
	r.handle(s, service{
		timeout: r.cfg.FetchTimeout,
		sem:     r.fetchSem,
		busy:    fetchBusy,
		onBusy:  func() { r.stats[cFetchRefused].Add(1) },
		limit:   func(protocol.ID) int { return maxFetchRequest },
		serve:   r.serveFetch,
		bad: func(from peer.ID, err error) {
			r.log.Debug("bad fetch request", "from", from, "err", err)
		},
	})
}

// serveFetch answers one Fetch request: the room's answer to the
// EventFetch it is handed (askRoom), or a refusal.
func (r *Router) serveFetch(s network.Stream, req []byte) error {
	roomID, err := decodeFetchRequest(req)
	if err != nil {
		return err
	}
	t := r.topic(roomID)
	if t == nil {
		r.stats[cFetchRefused].Add(1)
		r.reply(s, encodeFetchReply(fetchNotInRoom, nil, nil, 0))
		return nil
	}
	served, status := t.askRoom(s.Conn().RemotePeer())
	if status != fetchOK {
		t.count(cFetchRefused)
		r.reply(s, encodeFetchReply(status, nil, nil, 0))
		return nil
	}
	data, err := EncodeMessage(served.State)
	if err == nil && len(data) > r.cfg.MaxMessageSize {
		err = fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), r.cfg.MaxMessageSize)
	}
	if err != nil {
		r.log.Warn("cannot serve fetch: bad local state", "room", roomID, "err", err)
		t.count(cFetchRefused)
		r.reply(s, encodeFetchReply(fetchRefused, nil, nil, 0))
		return nil
	}
	t.count(cFetchServed)
	r.reply(s, encodeFetchReply(fetchOK, data, served.Relayed, r.cfg.MaxMessageSize))
	return nil
}

// serveWait is how long a Fetch handler waits for the room's answer:
// half the stream's deadline, so that the refusal still reaches a client
// whose own deadline (FetchTimeout too, from a moment earlier) is near.
func (cfg Config) serveWait() time.Duration { return cfg.FetchTimeout / 2 }

// askRoom hands a Fetch request of from to the room as an EventFetch and
// waits for the room's answer: at most serveWait (the room is stuck or
// nobody polls this Topic: status busy), or until the Topic is closed
// (refused). An unanswered request is taken out of the queue again. The
// room answers into a 1-buffered channel, so it never waits for this
// goroutine. Requests are never dropped by the queue's bound: the
// handlers' concurrency bound (MaxConcurrentFetches) bounds them.
func (t *Topic) askRoom(from peer.ID) (roomnet.Served, byte) {
	reply := make(chan roomnet.FetchAnswer, 1)
	if !t.q.pushFetch(roomnet.Event{Kind: roomnet.EventFetch, From: roomnet.PeerID(from), Reply: reply}) {
		return roomnet.Served{}, fetchRefused // closed
	}
	wait := time.NewTimer(t.r.cfg.serveWait())
	defer wait.Stop()
	status := fetchRefused
	select {
	case a := <-reply:
		if a.OK {
			return a.Served, fetchOK
		}
		return roomnet.Served{}, fetchRefused
	case <-wait.C:
		status = fetchBusy
	case <-t.ctx.Done():
	}
	t.q.dropFetch(reply) // an answer that comes after this is discarded
	return roomnet.Served{}, status
}
