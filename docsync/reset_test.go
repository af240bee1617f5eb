package docsync

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

// failingReader yields b, then fails with err (a reset stream).
type failingReader struct {
	b   []byte
	err error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, r.err
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// A failed read is not a malformed frame: ReadFrame returns the read's
// error (wrapped), whether it fails inside the length or inside the body,
// and an end inside a frame stays ErrMalformed (truncated bytes).
func TestReadFrameTellsAFailedReadFromBadBytes(t *testing.T) {
	whole, err := AppendFrame(nil, Frame{Type: Request, Doc: "notes", Data: bytes.Repeat([]byte{0x42}, 300)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	reset := errors.New("stream reset")
	for _, cut := range []int{0, 1, 5, len(whole) - 1} {
		_, _, err := ReadFrame(bufio.NewReader(&failingReader{b: whole[:cut], err: reset}), 0)
		if cut == 0 {
			if !errors.Is(err, reset) {
				t.Fatalf("failed before any byte: %v, want the read's error", err)
			}
			continue
		}
		if !errors.Is(err, reset) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge) {
			t.Fatalf("failed after %d bytes: %v, want the read's error and not ErrMalformed", cut, err)
		}
		_, _, err = ReadFrame(bufio.NewReader(&failingReader{b: whole[:cut], err: io.EOF}), 0)
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("ended after %d bytes: %v, want ErrMalformed", cut, err)
		}
	}
}

// A peer's second inbound stream replaces the first (the newest wins):
// the reset of the old one is not a bad frame and does not restart the
// session. Before ReadFrame told the two apart, the old reader counted
// BadFrames and failed the session at once (checked against that code:
// BadFrames was 1 within milliseconds).
func TestReplacedStreamIsNoBadFrame(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	a := newNode(t, mn, Config{})
	a.open(t, "notes")
	b, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	b.SetStreamHandler(protocol.ID(ProtocolID), func(s network.Stream) { _, _ = io.Copy(io.Discard, s) })
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Connect(ctx, peer.AddrInfo{ID: a.h.ID(), Addrs: a.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	hello, err := AppendFrame(nil, Frame{Type: Hello, Version: Version, Session: 7}, 0)
	if err != nil {
		t.Fatal(err)
	}
	open := func() network.Stream {
		s, err := b.NewStream(ctx, a.h.ID(), protocol.ID(ProtocolID))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(hello); err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := open()
	defer first.Reset()
	eventually(t, 5*time.Second, "a reads the first stream's Hello", func() bool { return a.svc.Stats().FramesIn[Hello] >= 1 })
	second := open()
	defer second.Reset()
	ended := make(chan error, 1)
	go func() {
		_, err := first.Read(make([]byte, 1)) // a writes nothing on it
		ended <- err
	}()
	select {
	case err := <-ended:
		if err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("the replaced stream ended with %v, want a reset", err)
		}
	case <-ctx.Done():
		t.Fatal("a never reset the replaced stream")
	}
	// The old reader's end is counted (or not) within microseconds of the
	// reset; a second is far beyond it.
	if until(time.Second, func() bool { return a.svc.Stats().BadFrames != 0 }) {
		t.Fatalf("the replaced stream's reset counted as a bad frame: %+v", a.svc.Stats())
	}
}
