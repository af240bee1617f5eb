package gossip

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/convene-p2p/convene/room"
)

// LeaveProtocol is the libp2p protocol of the direct goodbye: Publish of a
// leave message also sends it over one stream of this protocol to every
// directly connected room peer and waits for their acknowledgements, so
// that a node that leaves and exits at once is still seen leaving
// (docs/PROTOCOL.md, "Goodbye").
const LeaveProtocol protocol.ID = "/convene/leave/1.0.0"

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

// deliverLeave sends the goodbye envelope data over LeaveProtocol to every
// peer in Peers(), concurrently, and waits for every answer, at most
// leaveTimeout, until ctx ends or the Topic is closed. Failures are logged
// only: the goodbye also went out over GossipSub.
func (t *Topic) deliverLeave(ctx context.Context, data []byte) {
	peers := t.pt.ListPeers()
	if len(peers) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, leaveTimeout)
	defer cancel()
	stop := context.AfterFunc(t.ctx, cancel) // Close aborts the delivery
	defer stop()

	req := encodeLeaveRequest(t.roomID, data)
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, err := t.r.sendLeave(ctx, p, req)
			switch {
			case err != nil:
				t.r.log.Debug("goodbye not delivered directly", "room", t.roomID, "peer", p, "err", err)
			case status == leaveOK:
				t.count(cLeaveAcked)
			default:
				t.r.log.Debug("goodbye refused", "room", t.roomID, "peer", p, "status", status)
			}
		}()
	}
	wg.Wait()
}

// sendLeave runs the client side of one goodbye exchange.
func (r *Router) sendLeave(ctx context.Context, pid peer.ID, req []byte) (byte, error) {
	s, err := r.h.NewStream(ctx, pid, LeaveProtocol)
	if err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if _, err := s.Write(req); err != nil {
		_ = s.Reset()
		return 0, ctxErr(ctx, err)
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return 0, ctxErr(ctx, err)
	}
	b, err := readAll(s, 1)
	if err != nil {
		_ = s.Reset()
		return 0, ctxErr(ctx, err)
	}
	_ = s.Close()
	return decodeLeaveReply(b)
}

// handleLeave serves one goodbye stream. The host runs it in its own
// goroutine; Router.Close resets the stream and waits for it.
func (r *Router) handleLeave(s network.Stream) {
	if !r.trackStream(s) {
		_ = s.Reset()
		return
	}
	defer r.untrackStream(s)
	_ = s.SetDeadline(time.Now().Add(leaveTimeout))

	select {
	case r.leaveSem <- struct{}{}:
		defer func() { <-r.leaveSem }()
	default:
		r.reply(s, []byte{leaveBusy})
		return
	}
	from := s.Conn().RemotePeer()
	b, err := readAll(s, maxLeaveRequest(r.cfg.MaxMessageSize))
	if err == nil {
		var roomID string
		var data []byte
		if roomID, data, err = decodeLeaveRequest(b, r.cfg.MaxMessageSize); err == nil {
			t := r.topic(roomID)
			if t == nil {
				r.reply(s, []byte{leaveNotInRoom})
				return
			}
			r.reply(s, []byte{t.receiveLeave(from, data)})
			return
		}
	}
	if errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge) {
		r.stats[cLeaveInvalid].Add(1)
		r.log.Debug("bad goodbye request", "from", from, "err", err)
	}
	_ = s.Reset()
}

// receiveLeave validates a goodbye envelope received directly from author
// (the stream's authenticated remote peer) exactly like a topic message
// signed by author, requires kind leave, and queues it for Next. It
// returns the reply status.
func (t *Topic) receiveLeave(author peer.ID, data []byte) byte {
	if !t.lim.allow(author, time.Now()) {
		t.count(cRateLimited)
		return leaveBusy
	}
	m, err := t.r.check(data, author)
	if err == nil && m.Kind != room.KindLeave {
		err = fmt.Errorf("%w: goodbye of kind %v", ErrMalformed, m.Kind)
	}
	if err != nil {
		t.count(cLeaveInvalid)
		t.r.log.Debug("rejected goodbye", "room", t.roomID, "from", author, "err", err)
		return leaveInvalid
	}
	if !t.q.pushMessage(room.NetEvent{Kind: room.EventMessage, From: room.PeerID(author), Msg: m}) {
		t.count(cDropped)
		return leaveBusy
	}
	t.count(cLeaveReceived)
	return leaveOK
}
