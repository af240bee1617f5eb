package docsync

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/convene-p2p/convene/doc"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ProtocolID is the libp2p protocol of document sync streams. Each peer
// opens one stream to each other peer and writes its frames on it; it reads
// the other's frames from the stream the other opened.
const ProtocolID = "/convene/docsync/1.0.0"

// Version is the frame format version, carried in Hello. A peer refuses a
// session whose Hello carries another version (it closes the stream).
// Version 2 binds a Have's digest to the peer sending it (DocDigest).
const Version = 2

// Limits of the frame format (docs/PROTOCOL.md part 4).
const (
	// DefaultMaxFrame is the default bound on a frame's body: the largest
	// document (doc.DefaultMaxSize) plus room for its ID and a header.
	DefaultMaxFrame = doc.DefaultMaxSize + 64<<10
	// MaxHeads bounds the heads of a Have frame or an announcement.
	MaxHeads = 1024
	// digestLen is the length of a Digest.
	digestLen = sha256.Size
)

// Errors of the codec. Every decoding error wraps one of them.
var (
	// ErrMalformed: the bytes are not a frame (truncated, bad lengths,
	// trailing bytes, a bad document ID).
	ErrMalformed = errors.New("docsync: malformed frame")
	// ErrTooLarge: a frame over the size limit, or too many heads.
	ErrTooLarge = errors.New("docsync: frame too large")
	// ErrUnknownType: a frame type this version does not know. A reader
	// skips such frames (a later version may add types).
	ErrUnknownType = errors.New("docsync: unknown frame type")
)

// FrameType is the first byte of a frame's body.
type FrameType uint8

// The frame types.
const (
	// Hello opens a session: Version and Session. A new session resets
	// every sync state the receiver holds for the sender.
	Hello FrameType = 1
	// Have says the sender holds the document whose digest is Digest, at
	// Heads (empty: it holds nothing yet and wants it). It names no ID: a
	// receiver that knows an ID with this digest answers by ID; one that
	// does not answers Unavailable.
	Have FrameType = 2
	// Request is a sync message (Data) for document Doc from a sender
	// that has no data of it: a holder answers with a Snapshot first.
	Request FrameType = 3
	// Sync is an Automerge sync message (Data) for document Doc.
	Sync FrameType = 4
	// Unavailable says the sender will not sync the document whose digest
	// is Digest: it does not have it, or its policy refuses.
	Unavailable FrameType = 5
	// Snapshot is a whole document (Data: its Save()) for Doc, sent before
	// sync to a peer that has nothing.
	Snapshot FrameType = 6
	// Delete says the sender deleted Doc (a tombstone): it will not sync it.
	Delete FrameType = 7
)

// String names the frame type.
func (t FrameType) String() string {
	switch t {
	case Hello:
		return "hello"
	case Have:
		return "have"
	case Request:
		return "request"
	case Sync:
		return "sync"
	case Unavailable:
		return "unavailable"
	case Snapshot:
		return "snapshot"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// Digest names a document without revealing its ID (see DocDigest). A
// peer that knows the ID can match it; one that does not learns nothing
// but that some document exists (an ID that can be guessed can be tested,
// so make IDs random).
type Digest [digestLen]byte

// DocDigest is the Digest by which peer p names document id in its Have
// frames: the SHA-256 of "convene/docsync/2 doc\x00", the uvarint length
// of p's bytes, p's bytes and the ID. It is bound to the naming peer, so a
// digest that p sends proves to the receiver that p knows the ID, and a
// peer that received it cannot replay it: naming the document as itself
// needs DocDigest(itself, id), which only the ID gives. (Version 1 had one
// digest per document, so any peer told our Have could fetch the document
// by sending its digest back.) An Unavailable answering a Have echoes the
// Have's digest; one answering a frame that named the ID carries
// DocDigest(that frame's sender, id).
func DocDigest(p peer.ID, id string) Digest {
	s := sha256.New()
	s.Write([]byte("convene/docsync/2 doc\x00"))
	s.Write(binary.AppendUvarint(nil, uint64(len(p))))
	s.Write([]byte(p))
	s.Write([]byte(id))
	var d Digest
	s.Sum(d[:0])
	return d
}

// String is the digest in hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// Frame is one frame of a sync stream. Which fields a type uses:
//
//	Hello        Version, Session
//	Have         Digest, Heads
//	Request      Doc, Data (may be empty)
//	Sync         Doc, Data
//	Unavailable  Digest
//	Snapshot     Doc, Data
//	Delete       Doc
type Frame struct {
	Type    FrameType
	Version uint64
	Session uint64
	Digest  Digest
	Heads   doc.Heads
	Doc     string
	Data    []byte
}

// AppendBody appends f's body (without the length prefix) to b.
func AppendBody(b []byte, f Frame) ([]byte, error) {
	b = append(b, byte(f.Type))
	switch f.Type {
	case Hello:
		b = binary.AppendUvarint(b, f.Version)
		b = binary.BigEndian.AppendUint64(b, f.Session)
	case Have:
		if len(f.Heads) > MaxHeads {
			return nil, fmt.Errorf("%w: %d heads, limit %d", ErrTooLarge, len(f.Heads), MaxHeads)
		}
		b = append(b, f.Digest[:]...)
		b = binary.AppendUvarint(b, uint64(len(f.Heads)))
		for _, h := range f.Heads {
			b = append(b, h[:]...)
		}
	case Unavailable:
		b = append(b, f.Digest[:]...)
	case Request, Sync, Snapshot, Delete:
		if err := doc.ValidateID(f.Doc); err != nil {
			return nil, err
		}
		if f.Type != Request && f.Type != Delete && len(f.Data) == 0 {
			return nil, fmt.Errorf("%w: empty %v", ErrMalformed, f.Type)
		}
		if f.Type == Delete && len(f.Data) > 0 {
			return nil, fmt.Errorf("%w: data in delete", ErrMalformed)
		}
		b = binary.AppendUvarint(b, uint64(len(f.Doc)))
		b = append(b, f.Doc...)
		b = append(b, f.Data...)
	default:
		return nil, fmt.Errorf("%w: %d", ErrUnknownType, uint8(f.Type))
	}
	return b, nil
}

// DecodeBody decodes one frame body. Data aliases body. A body of an
// unknown type returns a Frame with that Type and ErrUnknownType.
func DecodeBody(body []byte) (Frame, error) {
	if len(body) == 0 {
		return Frame{}, fmt.Errorf("%w: empty body", ErrMalformed)
	}
	f := Frame{Type: FrameType(body[0])}
	d := body[1:]
	switch f.Type {
	case Hello:
		v, n := binary.Uvarint(d)
		if n <= 0 || n != uvarintLen(v) {
			return Frame{}, fmt.Errorf("%w: bad hello version", ErrMalformed)
		}
		d = d[n:]
		if len(d) != 8 {
			return Frame{}, fmt.Errorf("%w: hello session is %d bytes, want 8", ErrMalformed, len(d))
		}
		f.Version, f.Session = v, binary.BigEndian.Uint64(d)
	case Have:
		if len(d) < digestLen {
			return Frame{}, fmt.Errorf("%w: have truncated", ErrMalformed)
		}
		copy(f.Digest[:], d)
		d = d[digestLen:]
		n, k := binary.Uvarint(d)
		if k <= 0 || k != uvarintLen(n) {
			return Frame{}, fmt.Errorf("%w: bad head count", ErrMalformed)
		}
		if n > MaxHeads {
			return Frame{}, fmt.Errorf("%w: %d heads, limit %d", ErrTooLarge, n, MaxHeads)
		}
		d = d[k:]
		if uint64(len(d)) != n*32 {
			return Frame{}, fmt.Errorf("%w: %d heads in %d bytes", ErrMalformed, n, len(d))
		}
		if n > 0 {
			f.Heads = make(doc.Heads, n)
			for i := range f.Heads {
				copy(f.Heads[i][:], d[32*i:])
			}
		}
	case Unavailable:
		if len(d) != digestLen {
			return Frame{}, fmt.Errorf("%w: unavailable is %d bytes, want %d", ErrMalformed, len(d), digestLen)
		}
		copy(f.Digest[:], d)
	case Request, Sync, Snapshot, Delete:
		n, k := binary.Uvarint(d)
		if k <= 0 || k != uvarintLen(n) || n > uint64(len(d)-k) {
			return Frame{}, fmt.Errorf("%w: bad document ID length", ErrMalformed)
		}
		id := string(d[k : k+int(n)])
		if err := doc.ValidateID(id); err != nil {
			return Frame{}, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		f.Doc = id
		if rest := d[k+int(n):]; len(rest) > 0 {
			f.Data = rest
		}
		if f.Type == Delete && f.Data != nil {
			return Frame{}, fmt.Errorf("%w: data in delete", ErrMalformed)
		}
		if (f.Type == Sync || f.Type == Snapshot) && f.Data == nil {
			return Frame{}, fmt.Errorf("%w: empty %v", ErrMalformed, f.Type)
		}
	default:
		return f, fmt.Errorf("%w: %d", ErrUnknownType, uint8(f.Type))
	}
	return f, nil
}

// AppendFrame appends f with its length prefix (a uvarint) to b. A body
// over max bytes is refused with ErrTooLarge (max <= 0: DefaultMaxFrame).
func AppendFrame(b []byte, f Frame, max int) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	body, err := AppendBody(nil, f)
	if err != nil {
		return nil, err
	}
	if len(body) > max {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(body), max)
	}
	b = binary.AppendUvarint(b, uint64(len(body)))
	return append(b, body...), nil
}

// WriteFrame writes f with its length prefix and reports the bytes written.
func WriteFrame(w io.Writer, f Frame, max int) (int, error) {
	b, err := AppendFrame(nil, f, max)
	if err != nil {
		return 0, err
	}
	return w.Write(b)
}

// ReadFrame reads one length-prefixed frame and reports the bytes it
// consumed. A length over max (max <= 0: DefaultMaxFrame) is refused with
// ErrTooLarge before anything is allocated; the stream is then unusable.
// A frame of an unknown type is consumed whole and returned with
// ErrUnknownType (the stream stays usable). io.EOF means a clean end
// between frames; an end inside a frame is ErrMalformed (truncated). A
// failed read (a reset stream, a deadline) is returned wrapped as it is,
// neither ErrMalformed nor ErrTooLarge: the bytes were not bad.
func ReadFrame(r *bufio.Reader, max int) (Frame, int, error) {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	rec := &recordingReader{r: r}
	n, err := binary.ReadUvarint(rec)
	if err != nil {
		switch {
		case errors.Is(err, io.EOF):
			return Frame{}, 0, io.EOF
		case rec.err != nil && !errors.Is(rec.err, io.EOF):
			return Frame{}, 0, fmt.Errorf("docsync: read: %w", rec.err)
		}
		return Frame{}, 0, fmt.Errorf("%w: length: %v", ErrMalformed, err)
	}
	k := uvarintLen(n)
	if n == 0 {
		return Frame{}, k, fmt.Errorf("%w: empty body", ErrMalformed)
	}
	if n > uint64(max) {
		return Frame{}, k, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, max)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return Frame{}, k, fmt.Errorf("docsync: read: %w", err)
		}
		return Frame{}, k, fmt.Errorf("%w: body: %v", ErrMalformed, err)
	}
	f, err := DecodeBody(body)
	return f, k + int(n), err
}

// recordingReader keeps the last error of the reader under a uvarint, so
// that ReadFrame tells a failed read (a reset stream) from bad bytes.
type recordingReader struct {
	r   *bufio.Reader
	err error
}

func (r *recordingReader) ReadByte() (byte, error) {
	b, err := r.r.ReadByte()
	if err != nil {
		r.err = err
	}
	return b, err
}

// Announcement is what a peer publishes on its namespace's announce topic
// when a document changes: the document's Digest (never its ID) and its
// heads. Receivers that know the ID and lack the heads sync.
type Announcement struct {
	Digest Digest
	Heads  doc.Heads
}

// announceVersion is the first byte of an encoded Announcement.
const announceVersion = 1

// EncodeAnnouncement encodes a: version 1, the digest, a uvarint count and
// the heads.
func EncodeAnnouncement(a Announcement) ([]byte, error) {
	if len(a.Heads) > MaxHeads {
		return nil, fmt.Errorf("%w: %d heads, limit %d", ErrTooLarge, len(a.Heads), MaxHeads)
	}
	b := make([]byte, 0, 1+digestLen+binary.MaxVarintLen64+32*len(a.Heads))
	b = append(b, announceVersion)
	b = append(b, a.Digest[:]...)
	b = binary.AppendUvarint(b, uint64(len(a.Heads)))
	for _, h := range a.Heads {
		b = append(b, h[:]...)
	}
	return b, nil
}

// DecodeAnnouncement decodes an announcement.
func DecodeAnnouncement(b []byte) (Announcement, error) {
	if len(b) == 0 || b[0] != announceVersion {
		return Announcement{}, fmt.Errorf("%w: announcement version", ErrMalformed)
	}
	// The rest is a Have body.
	body := make([]byte, len(b))
	body[0] = byte(Have)
	copy(body[1:], b[1:])
	f, err := DecodeBody(body)
	if err != nil {
		return Announcement{}, err
	}
	return Announcement{Digest: f.Digest, Heads: f.Heads}, nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
