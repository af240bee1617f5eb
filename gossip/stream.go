package gossip

import (
	"context"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// The Fetch and goodbye protocols are both one request and one reply per
// stream: the client writes its request and half-closes, the server
// writes its reply and closes. roundTrip is the client side of both, and
// handle the server side's preamble.

// offer is a request a client is ready to send over proto; a nil req
// means that protocol is not offered.
type offer struct {
	proto protocol.ID
	req   []byte
}

// roundTrip runs the client side of one exchange with pid: it opens a
// stream with the first offered protocol the peer speaks, writes that
// protocol's request, half-closes, and reads the whole reply (at most
// limit bytes; the server closes after it). ctx bounds all of it: its
// deadline is the stream's, and its end resets the stream; a stream error
// that ctx caused is returned as ctx's error.
func (r *Router) roundTrip(ctx context.Context, pid peer.ID, limit int, offers ...offer) ([]byte, error) {
	var protos []protocol.ID
	for _, o := range offers {
		if o.req != nil {
			protos = append(protos, o.proto)
		}
	}
	if len(protos) == 0 {
		return nil, errors.New("gossip: no request to send")
	}
	s, err := r.h.NewStream(ctx, pid, protos...)
	if err != nil {
		return nil, err
	}
	var req []byte // the negotiated protocol's: one of those offered
	for _, o := range offers {
		if o.req != nil && o.proto == s.Protocol() {
			req = o.req
			break
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if _, err := s.Write(req); err != nil {
		_ = s.Reset()
		return nil, ctxErr(ctx, err)
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return nil, ctxErr(ctx, err)
	}
	b, err := readAll(s, limit)
	if err != nil {
		_ = s.Reset()
		return nil, ctxErr(ctx, err)
	}
	_ = s.Close()
	return b, nil
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

// service describes the server side of one request/reply protocol for
// handle.
type service struct {
	timeout time.Duration // the stream's read/write deadline, from its start
	sem     chan struct{} // bounds the streams served at once
	busy    byte          // the reply when sem is full
	onBusy  func()        // counts a busy reply; may be nil
	// limit is the largest valid request over the stream's protocol.
	limit func(protocol.ID) int
	// serve answers a whole request: it writes the reply (Router.reply) and
	// returns nil, or returns the request's decoding error, and the stream
	// is reset.
	serve func(s network.Stream, req []byte) error
	// bad is told of a request that was malformed or too large.
	bad func(from peer.ID, err error)
}

// handle is the preamble shared by the Fetch and goodbye handlers (the
// host runs each stream's in its own goroutine): it registers the stream
// so that Router.Close can reset it and wait for the handler, sets the
// deadline, takes a slot of sem or replies busy, reads the whole request
// (the client half-closes after it) and hands it to sv.serve. A stream
// that fails to read, or whose request does not decode, is reset.
func (r *Router) handle(s network.Stream, sv service) {
	if !r.trackStream(s) {
		_ = s.Reset()
		return
	}
	defer r.untrackStream(s)
	_ = s.SetDeadline(time.Now().Add(sv.timeout))

	select {
	case sv.sem <- struct{}{}:
		defer func() { <-sv.sem }()
	default:
		if sv.onBusy != nil {
			sv.onBusy()
		}
		r.reply(s, []byte{sv.busy})
		return
	}
	b, err := readAll(s, sv.limit(s.Protocol()))
	if err == nil {
		if err = sv.serve(s, b); err == nil {
			return
		}
	}
	if errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge) {
		sv.bad(s.Conn().RemotePeer(), err)
	}
	_ = s.Reset()
}

// reply writes a whole reply and closes the stream (resets it if the
// write fails).
func (r *Router) reply(s network.Stream, b []byte) {
	if _, err := s.Write(b); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}
