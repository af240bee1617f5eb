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

	"github.com/convene-p2p/convene/room"
)

// FetchProtocol is the libp2p protocol of the snapshot fetch: one request,
// one reply per stream (docs/PROTOCOL.md, "Fetch").
const FetchProtocol protocol.ID = "/convene/fetch/1.0.0"

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
// uvarint length and the envelope.
func encodeFetchReply(status byte, envelope []byte) []byte {
	if status != fetchOK {
		return []byte{status}
	}
	b := make([]byte, 0, 1+uvarintLen(uint64(len(envelope)))+len(envelope))
	b = append(b, status)
	b = appendUvarint(b, uint64(len(envelope)))
	return append(b, envelope...)
}

// decodeFetchReply decodes a whole reply (the server closes after it) with
// an envelope of at most maxSize bytes; it never panics.
func decodeFetchReply(b []byte, maxSize int) (status byte, envelope []byte, err error) {
	d := decoder{b: b}
	status, ok := d.byte()
	if !ok {
		return 0, nil, fmt.Errorf("%w: empty reply", ErrMalformed)
	}
	switch status {
	case fetchOK:
		n, err := d.length(1, maxSize, "reply")
		if err != nil {
			return 0, nil, err
		}
		envelope = d.take(n)
	case fetchNotInRoom, fetchRefused, fetchBusy:
	default:
		return 0, nil, fmt.Errorf("%w: unknown reply status %d", ErrMalformed, status)
	}
	if len(d.b) != 0 {
		return 0, nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	return status, envelope, nil
}

// maxFetchReply is the largest valid reply for an envelope limit.
func maxFetchReply(maxSize int) int { return 1 + uvarintLen(uint64(maxSize)) + maxSize }

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
func (t *Topic) Fetch(ctx context.Context, p room.PeerID) (room.Message, error) {
	if t.closed.Load() {
		return room.Message{}, room.ErrNetworkClosed
	}
	pid := peer.ID(p)
	if pid == t.self {
		return room.Message{}, errors.New("gossip: fetch from self")
	}
	ctx, cancel := context.WithTimeout(ctx, t.r.cfg.FetchTimeout)
	defer cancel()
	stop := context.AfterFunc(t.ctx, cancel) // Close aborts the fetch
	defer stop()

	data, err := t.r.fetch(ctx, pid, t.roomID)
	if err != nil {
		if t.closed.Load() {
			return room.Message{}, room.ErrNetworkClosed
		}
		return room.Message{}, fmt.Errorf("gossip: fetch %q from %s: %w", t.roomID, pid, err)
	}
	m, err := t.r.check(data, pid)
	if err == nil && m.Kind != room.KindHeartbeat && m.Kind != room.KindHello {
		err = fmt.Errorf("%w: reply of kind %v", ErrMalformed, m.Kind)
	}
	if err != nil {
		t.count(cFetchInvalid)
		return room.Message{}, fmt.Errorf("gossip: fetch %q from %s: invalid reply: %w", t.roomID, pid, err)
	}
	return m, nil
}

// fetch runs the client side of one exchange and returns the envelope.
func (r *Router) fetch(ctx context.Context, pid peer.ID, roomID string) ([]byte, error) {
	s, err := r.h.NewStream(ctx, pid, FetchProtocol)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if _, err := s.Write(encodeFetchRequest(roomID)); err != nil {
		_ = s.Reset()
		return nil, ctxErr(ctx, err)
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return nil, ctxErr(ctx, err)
	}
	b, err := readAll(s, maxFetchReply(r.cfg.MaxMessageSize))
	if err != nil {
		_ = s.Reset()
		return nil, ctxErr(ctx, err)
	}
	_ = s.Close()
	status, envelope, err := decodeFetchReply(b, r.cfg.MaxMessageSize)
	if err != nil {
		return nil, err
	}
	switch status {
	case fetchNotInRoom:
		return nil, ErrNotInRoom
	case fetchRefused:
		return nil, ErrRefused
	case fetchBusy:
		return nil, fmt.Errorf("%w: busy", ErrRefused)
	}
	return envelope, nil
}

// ctxErr prefers the context's error to the stream error it caused (a reset
// by the AfterFunc, or the stream deadline, which is the context's).
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return err
}

// handleFetch serves one Fetch stream. The host runs it in its own
// goroutine; Router.Close resets the stream and waits for it.
func (r *Router) handleFetch(s network.Stream) {
	if !r.trackStream(s) {
		_ = s.Reset()
		return
	}
	defer r.untrackStream(s)
	_ = s.SetDeadline(time.Now().Add(r.cfg.FetchTimeout))

	select {
	case r.fetchSem <- struct{}{}:
		defer func() { <-r.fetchSem }()
	default:
		r.stats[cFetchRefused].Add(1)
		r.reply(s, encodeFetchReply(fetchBusy, nil))
		return
	}
	b, err := readAll(s, maxFetchRequest)
	if err != nil {
		_ = s.Reset()
		return
	}
	roomID, err := decodeFetchRequest(b)
	if err != nil {
		r.log.Debug("bad fetch request", "from", s.Conn().RemotePeer(), "err", err)
		_ = s.Reset()
		return
	}
	t := r.topic(roomID)
	if t == nil {
		r.stats[cFetchRefused].Add(1)
		r.reply(s, encodeFetchReply(fetchNotInRoom, nil))
		return
	}
	m, ok := t.serveState()
	if !ok {
		t.count(cFetchRefused)
		r.reply(s, encodeFetchReply(fetchRefused, nil))
		return
	}
	data, err := EncodeMessage(m)
	if err == nil && len(data) > r.cfg.MaxMessageSize {
		err = fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), r.cfg.MaxMessageSize)
	}
	if err != nil {
		r.log.Warn("cannot serve fetch: bad local state", "room", roomID, "err", err)
		t.count(cFetchRefused)
		r.reply(s, encodeFetchReply(fetchRefused, nil))
		return
	}
	t.count(cFetchServed)
	r.reply(s, encodeFetchReply(fetchOK, data))
}

func (r *Router) reply(s network.Stream, b []byte) {
	if _, err := s.Write(b); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}
