package docsync

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/convene-p2p/convene/doc"
	"github.com/libp2p/go-libp2p/core/peer"
)

func sampleFrames() []Frame {
	var h1, h2 doc.Hash
	h1[0], h2[31] = 1, 2
	return []Frame{
		{Type: Hello, Version: Version, Session: 0x0102030405060708},
		{Type: Have, Digest: DocDigest(vectorPeer(), "notes"), Heads: doc.Heads{h1, h2}},
		{Type: Have, Digest: DocDigest(vectorPeer(), "empty")},
		{Type: Request, Doc: "notes", Data: []byte{0x42, 0, 0, 0}},
		{Type: Request, Doc: "notes"},
		{Type: Sync, Doc: "notes", Data: []byte{0x42, 1, 2}},
		{Type: Unavailable, Digest: DocDigest(vectorPeer(), "notes")},
		{Type: Snapshot, Doc: "notes", Data: []byte{0x85, 0x6f, 0x4a, 0x83}},
		{Type: Delete, Doc: "notes"},
	}
}

func TestFramesRoundTrip(t *testing.T) {
	var stream []byte
	for _, f := range sampleFrames() {
		b, err := AppendFrame(nil, f, 0)
		if err != nil {
			t.Fatalf("%v: %v", f.Type, err)
		}
		stream = append(stream, b...)
	}
	r := bufio.NewReader(bytes.NewReader(stream))
	total := 0
	for _, want := range sampleFrames() {
		got, n, err := ReadFrame(r, 0)
		if err != nil {
			t.Fatalf("%v: %v", want.Type, err)
		}
		total += n
		a, _ := AppendBody(nil, want)
		b, _ := AppendBody(nil, got)
		if !bytes.Equal(a, b) || got.Type != want.Type || got.Doc != want.Doc {
			t.Fatalf("%v: got %+v, want %+v", want.Type, got, want)
		}
	}
	if _, _, err := ReadFrame(r, 0); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
	if total != len(stream) {
		t.Fatalf("ReadFrame reported %d bytes of %d", total, len(stream))
	}
}

func TestFrameLimits(t *testing.T) {
	big := Frame{Type: Snapshot, Doc: "d", Data: make([]byte, 100)}
	if _, err := AppendFrame(nil, big, 50); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("encode over the limit: %v", err)
	}
	b, _ := AppendFrame(nil, big, 0)
	if _, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(b)), 50); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("decode over the limit: %v", err)
	}
	// A length prefix claiming 1 TiB is refused before any allocation.
	huge := []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x20}
	if _, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(huge)), 0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("huge length: %v", err)
	}
	if _, err := AppendBody(nil, Frame{Type: Have, Heads: make(doc.Heads, MaxHeads+1)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too many heads: %v", err)
	}
	for _, bad := range []Frame{
		{Type: Sync, Doc: "", Data: []byte{1}},
		{Type: Sync, Doc: "d"},
		{Type: Snapshot, Doc: "d"},
		{Type: Delete, Doc: "d", Data: []byte{1}},
		{Type: 99},
	} {
		if _, err := AppendBody(nil, bad); err == nil {
			t.Fatalf("encoded %+v", bad)
		}
	}
}

func TestUnknownFrameTypeIsSkipped(t *testing.T) {
	var stream []byte
	stream = append(stream, 3, 200, 1, 2) // type 200, two bytes
	b, _ := AppendFrame(nil, Frame{Type: Delete, Doc: "x"}, 0)
	stream = append(stream, b...)
	r := bufio.NewReader(bytes.NewReader(stream))
	f, _, err := ReadFrame(r, 0)
	if !errors.Is(err, ErrUnknownType) || f.Type != 200 {
		t.Fatalf("unknown type: %v %v", f.Type, err)
	}
	f, _, err = ReadFrame(r, 0)
	if err != nil || f.Type != Delete || f.Doc != "x" {
		t.Fatalf("frame after the unknown one: %+v %v", f, err)
	}
}

func TestAnnouncementRoundTrip(t *testing.T) {
	var h doc.Hash
	h[5] = 9
	a := Announcement{Digest: AnnounceDigest("x"), Heads: doc.Heads{h}}
	b, err := EncodeAnnouncement(a)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeAnnouncement(b)
	if err != nil || got.Digest != a.Digest || !got.Heads.Equal(a.Heads) {
		t.Fatalf("got %+v %v", got, err)
	}
	for _, bad := range [][]byte{nil, {2}, b[:len(b)-1], append(b, 0)} {
		if _, err := DecodeAnnouncement(bad); err == nil {
			t.Fatalf("decoded %x", bad)
		}
	}
}

func TestDigestHidesTheIDAndIsBoundToThePeer(t *testing.T) {
	p, q := vectorPeer(), peer.ID("another peer")
	d := DocDigest(p, "secret-doc")
	if bytes.Contains(d[:], []byte("secret")) || d == DocDigest(p, "secret-doc2") || d != DocDigest(p, "secret-doc") {
		t.Fatal("digest is not a stable one-way name")
	}
	if d == DocDigest(q, "secret-doc") {
		t.Fatal("two peers name a document by the same digest: one could replay the other's")
	}
	// The peer's bytes are length-prefixed: no (peer, id) split collides.
	if DocDigest("ab", "c") == DocDigest("a", "bc") {
		t.Fatal("digest input is ambiguous")
	}
	if AnnounceDigest("secret-doc") == d {
		t.Fatal("announce and doc digests share a domain")
	}
}

// FuzzDecodeBody: no panic; whatever decodes re-encodes to the same bytes
// (the encoding is canonical).
func FuzzDecodeBody(f *testing.F) {
	for _, fr := range sampleFrames() {
		b, _ := AppendBody(nil, fr)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0x80})
	f.Fuzz(func(t *testing.T, body []byte) {
		fr, err := DecodeBody(body)
		if err != nil {
			return
		}
		again, err := AppendBody(nil, fr)
		if err != nil {
			t.Fatalf("decoded %x but cannot encode it: %v", body, err)
		}
		if !bytes.Equal(again, body) {
			t.Fatalf("not canonical: %x re-encodes as %x", body, again)
		}
	})
}

// FuzzReadFrame: a stream of arbitrary bytes never panics, never claims
// more bytes than it holds, and never allocates past the limit.
func FuzzReadFrame(f *testing.F) {
	for _, fr := range sampleFrames() {
		b, _ := AppendFrame(nil, fr, 0)
		f.Add(b)
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := bufio.NewReader(bytes.NewReader(stream))
		used := 0
		for i := 0; i < 64; i++ {
			_, n, err := ReadFrame(r, 1<<16)
			used += n
			if used > len(stream) {
				t.Fatalf("consumed %d of %d bytes", used, len(stream))
			}
			if err != nil && !errors.Is(err, ErrUnknownType) && !errors.Is(err, ErrMalformed) {
				if err == io.EOF || errors.Is(err, ErrTooLarge) {
					return
				}
				t.Fatalf("unexpected error %v", err)
			}
			if errors.Is(err, ErrMalformed) {
				return
			}
		}
	})
}

func FuzzDecodeAnnouncement(f *testing.F) {
	b, _ := EncodeAnnouncement(Announcement{Digest: AnnounceDigest("x"), Heads: doc.Heads{{1}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeAnnouncement(b)
		if err != nil {
			return
		}
		again, err := EncodeAnnouncement(a)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("not canonical: %x vs %x (%v)", b, again, err)
		}
	})
}

// syncHeads never panics on network input, and the heads it accepts are
// the 32-byte hashes after the message type and count.
func FuzzSyncHeads(f *testing.F) {
	f.Add([]byte{0x42, 0})
	f.Add(append([]byte{0x42, 1}, make([]byte, 32)...))
	f.Add([]byte{0x42, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		hs, err := syncHeads(b)
		if err != nil {
			return
		}
		n, k := binary.Uvarint(b[1:])
		if b[0] != 0x42 || k <= 0 || n != uint64(len(hs)) {
			t.Fatalf("accepted %x as %d heads", b, len(hs))
		}
		for i, h := range hs {
			if !bytes.Equal(h[:], b[1+k+32*i:1+k+32*(i+1)]) {
				t.Fatalf("head %d of %x is %x", i, b, h)
			}
		}
	})
}
