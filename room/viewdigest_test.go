package room

import (
	"bufio"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/convene-p2p/convene/room/roomnet"
)

// The view-digest test vectors in docs/PROTOCOL.md (2.12) are what the code
// computes: the block is read from the document itself.
func TestViewDigestVectors(t *testing.T) {
	f, err := os.Open("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in, n := false, 0
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "```view-digest-vectors":
			in = true
			continue
		case in && line == "```":
			in = false
		}
		if !in {
			continue
		}
		fields := strings.Fields(line)
		want, err := strconv.ParseUint(fields[len(fields)-1], 16, 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		var peers []PeerID
		for _, q := range fields[1 : len(fields)-1] {
			b, err := hex.DecodeString(strings.Trim(q, `"`))
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			peers = append(peers, PeerID(b))
		}
		var got uint64
		switch fields[0] {
		case "hash":
			got = roomnet.PeerHash(peers[0])
		case "digest":
			got = roomnet.ViewDigest(peers...)
		default:
			t.Fatalf("unknown vector %q", line)
		}
		if got != want {
			t.Errorf("%s: got %016x, want %016x", line, got, want)
		}
		n++
	}
	if n < 5 {
		t.Fatalf("found %d vectors in docs/PROTOCOL.md, want at least 5", n)
	}
}
