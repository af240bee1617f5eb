package docsync

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/convene-p2p/convene/doc"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// vectorPeer is the peer the vectors' DocDigests are bound to: the
// Ed25519 key whose seed is 32 bytes of 0x01.
func vectorPeer() peer.ID {
	seed := bytes.Repeat([]byte{1}, ed25519.SeedSize)
	k, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		panic(err)
	}
	p, err := peer.IDFromPrivateKey(k)
	if err != nil {
		panic(err)
	}
	return p
}

var update = flag.Bool("update", false, "rewrite testdata/docsync/ from the codec")

var vectorsDir = filepath.Join("..", "testdata", "docsync")

// vector is one frame of testdata/docsync/frames.json: its fields and the
// whole frame on the wire (length prefix included) in hex.
type vector struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Version  uint64 `json:"version,omitempty"`
	Session  string `json:"session,omitempty"` // 16 hex digits
	Digest   string `json:"digest,omitempty"`
	DigestOf string `json:"digest_of,omitempty"` // the document ID hashed into Digest
	// DigestPeer is the peer whose DocDigest the frame carries.
	DigestPeer string   `json:"digest_peer,omitempty"`
	Heads      []string `json:"heads,omitempty"`
	Doc        string   `json:"doc,omitempty"`
	Data       string   `json:"data,omitempty"`
	Hex        string   `json:"hex"`
}

// badVector is bytes a reader must refuse, and the error it wraps.
type badVector struct {
	Name  string `json:"name"`
	Hex   string `json:"hex"`
	Error string `json:"error"` // malformed, too_large, unknown_type
}

type announceVector struct {
	Name     string   `json:"name"`
	DigestOf string   `json:"digest_of"`
	Digest   string   `json:"digest"`
	Heads    []string `json:"heads"`
	Hex      string   `json:"hex"`
}

type vectorFile struct {
	Comment       string           `json:"comment"`
	Frames        []vector         `json:"frames"`
	Bad           []badVector      `json:"bad"`
	Announcements []announceVector `json:"announcements"`
}

func vectorFrames() []struct {
	name, of string
	f        Frame
} {
	var h1, h2 doc.Hash
	for i := range h1 {
		h1[i], h2[i] = byte(i), byte(0xff-i)
	}
	return []struct {
		name, of string
		f        Frame
	}{
		{"hello", "", Frame{Type: Hello, Version: Version, Session: 0x0102030405060708}},
		{"have with two heads", "notes", Frame{Type: Have, Digest: DocDigest(vectorPeer(), "notes"), Heads: doc.Heads{h1, h2}}},
		{"have, nothing held (a want)", "notes", Frame{Type: Have, Digest: DocDigest(vectorPeer(), "notes")}},
		{"request with a sync message", "", Frame{Type: Request, Doc: "notes", Data: []byte{0x42, 0x00, 0x00, 0x01, 0x00}}},
		{"request, empty", "", Frame{Type: Request, Doc: "notes"}},
		{"sync", "", Frame{Type: Sync, Doc: "notes", Data: []byte{0x42, 0x01, 0x02, 0x03}}},
		{"unavailable", "notes", Frame{Type: Unavailable, Digest: DocDigest(vectorPeer(), "notes")}},
		{"snapshot", "", Frame{Type: Snapshot, Doc: "notes", Data: []byte{0x85, 0x6f, 0x4a, 0x83, 0x01}}},
		{"delete", "", Frame{Type: Delete, Doc: "notes"}},
	}
}

var badFrames = []badVector{
	{"zero length", "00", "malformed"},
	{"length past the end", "05040000", "malformed"},
	{"length over the limit (1 TiB)", "808080808020", "too_large"},
	{"hello with a 7-byte session", "09010101020304050607", "malformed"},
	{"hello version not minimal", "0b0181000102030405060708", "malformed"},
	{"sync without data", "0704056e6f746573", "malformed"},
	{"delete with data", "0807056e6f74657301", "malformed"},
	{"sync with an empty document ID", "03040042", "malformed"},
	{"unavailable, digest truncated", "0305" + "0000", "malformed"},
	{"unknown type 200", "03c80102", "unknown_type"},
}

func hexHeads(hs doc.Heads) []string {
	var out []string
	for _, h := range hs {
		out = append(out, hex.EncodeToString(h[:]))
	}
	return out
}

func buildVectors(t *testing.T) vectorFile {
	vf := vectorFile{Comment: "docsync frame test vectors (docs/PROTOCOL.md part 4). hex is the whole frame: uvarint body length, type byte, body. An announcement's digest is AnnounceDigest(digest_of), a frame's DocDigest(digest_peer, digest_of). Regenerate with: go test ./docsync/ -run TestVectors -update"}
	for _, v := range vectorFrames() {
		b, err := AppendFrame(nil, v.f, 0)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		vec := vector{Name: v.name, Type: v.f.Type.String(), Version: v.f.Version, Doc: v.f.Doc, Heads: hexHeads(v.f.Heads), Hex: hex.EncodeToString(b), DigestOf: v.of}
		if v.of != "" {
			vec.DigestPeer = vectorPeer().String()
		}
		if v.f.Type == Hello {
			vec.Session = fmt.Sprintf("%016x", v.f.Session)
		}
		if v.f.Type == Have || v.f.Type == Unavailable {
			vec.Digest = v.f.Digest.String()
		}
		if len(v.f.Data) > 0 {
			vec.Data = hex.EncodeToString(v.f.Data)
		}
		vf.Frames = append(vf.Frames, vec)
	}
	vf.Bad = badFrames
	var h doc.Hash
	h[0], h[31] = 0xaa, 0x55
	for _, a := range []struct {
		name, of string
		heads    doc.Heads
	}{{"one head", "notes", doc.Heads{h}}, {"no heads", "notes", nil}} {
		an := Announcement{Digest: AnnounceDigest(a.of), Heads: a.heads}
		b, err := EncodeAnnouncement(an)
		if err != nil {
			t.Fatal(err)
		}
		vf.Announcements = append(vf.Announcements, announceVector{Name: a.name, DigestOf: a.of, Digest: an.Digest.String(), Heads: hexHeads(a.heads), Hex: hex.EncodeToString(b)})
	}
	return vf
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func frameOf(t *testing.T, v vector) Frame {
	t.Helper()
	f := Frame{Version: v.Version, Doc: v.Doc}
	found := false
	for ty := FrameType(1); ty < maxType; ty++ {
		if ty.String() == v.Type {
			f.Type, found = ty, true
		}
	}
	if !found {
		t.Fatalf("%s: unknown type %q", v.Name, v.Type)
	}
	if v.Session != "" {
		s, err := strconv.ParseUint(v.Session, 16, 64)
		if err != nil {
			t.Fatalf("%s: session: %v", v.Name, err)
		}
		f.Session = s
	}
	if v.Digest != "" {
		copy(f.Digest[:], mustHex(t, v.Digest))
		if v.DigestOf != "" && v.DigestPeer != "" {
			p, err := peer.Decode(v.DigestPeer)
			if err != nil {
				t.Fatalf("%s: digest_peer: %v", v.Name, err)
			}
			if DocDigest(p, v.DigestOf) != f.Digest {
				t.Fatalf("%s: digest is not DocDigest(%s, %q)", v.Name, p, v.DigestOf)
			}
		}
	}
	for _, h := range v.Heads {
		var x doc.Hash
		copy(x[:], mustHex(t, h))
		f.Heads = append(f.Heads, x)
	}
	if v.Data != "" {
		f.Data = mustHex(t, v.Data)
	}
	return f
}

// TestVectors checks the codec against testdata/docsync/frames.json: each
// frame's fields encode to its hex and its hex decodes to its fields; each
// bad vector is refused with its error. -update rewrites the file.
func TestVectors(t *testing.T) {
	path := filepath.Join(vectorsDir, "frames.json")
	if *update {
		b, err := json.MarshalIndent(buildVectors(t), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(raw, &vf); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, v := range vf.Frames {
		f := frameOf(t, v)
		seen[v.Type] = true
		want := mustHex(t, v.Hex)
		got, err := AppendFrame(nil, f, 0)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: encodes as %x (%v), vector %x", v.Name, got, err, want)
		}
		d, n, err := ReadFrame(bufio.NewReader(bytes.NewReader(want)), 0)
		if err != nil || n != len(want) {
			t.Errorf("%s: decode: %v (%d of %d bytes)", v.Name, err, n, len(want))
			continue
		}
		if d.Type != f.Type || d.Version != f.Version || d.Session != f.Session || d.Digest != f.Digest ||
			!d.Heads.Equal(f.Heads) || d.Doc != f.Doc || !bytes.Equal(d.Data, f.Data) {
			t.Errorf("%s: decodes as %+v, vector %+v", v.Name, d, f)
		}
	}
	for ty := Hello; ty <= Delete; ty++ {
		if !seen[ty.String()] {
			t.Errorf("no vector for frame type %v", ty)
		}
	}
	errs := map[string]error{"malformed": ErrMalformed, "too_large": ErrTooLarge, "unknown_type": ErrUnknownType}
	for _, v := range vf.Bad {
		want := errs[v.Error]
		if want == nil {
			t.Fatalf("%s: unknown error %q", v.Name, v.Error)
		}
		_, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(mustHex(t, v.Hex))), 0)
		t.Logf("bad %s: %v", v.Name, err)
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", v.Name, err, want)
		}
	}
	for _, v := range vf.Announcements {
		a := Announcement{}
		copy(a.Digest[:], mustHex(t, v.Digest))
		if AnnounceDigest(v.DigestOf) != a.Digest {
			t.Errorf("%s: digest is not AnnounceDigest(%q)", v.Name, v.DigestOf)
		}
		for _, h := range v.Heads {
			var x doc.Hash
			copy(x[:], mustHex(t, h))
			a.Heads = append(a.Heads, x)
		}
		got, err := EncodeAnnouncement(a)
		if err != nil || hex.EncodeToString(got) != v.Hex {
			t.Errorf("announcement %s: encodes as %x (%v), vector %s", v.Name, got, err, v.Hex)
		}
		d, err := DecodeAnnouncement(mustHex(t, v.Hex))
		if err != nil || d.Digest != a.Digest || !d.Heads.Equal(a.Heads) {
			t.Errorf("announcement %s: decodes as %+v (%v)", v.Name, d, err)
		}
	}
}
