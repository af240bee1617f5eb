package ephemeral

import (
	"fmt"
	"strings"
	"testing"
)

func TestPeerIDStringIsBase58AsLibp2pPrintsIt(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "",
		"\x00":                     "1",
		"\x61":                     "2g",
		"\x62\x62\x62":             "a3gV",
		"\x63\x63\x63":             "aPEr",
		"\x00\x00\x28\x7f\xb4\xcd": "11233QC4",
		"Hello World!":             "2NEpo7TZRRrLZSi2U",
		// Ed25519 libp2p peer IDs (identity multihash of the public key),
		// as go-libp2p's peer.ID.String prints them.
		"\x00\x24\x08\x01\x12\x20" + strings.Repeat("\x00", 32): "12D3KooW9pNAk8aiBuGVQtWRdbkLmo5qVL3e2h5UxbN2Nz9ttwiw",
		"\x00\x24\x08\x01\x12\x20" + strings.Repeat("\x07", 32): "12D3KooWAHoEkEqnKzM5PXFygh2movVBCSX3k8tDsT2cneU68Gyt",
	} {
		if got := PeerID(in).String(); got != want {
			t.Errorf("PeerID(%x).String() = %q, want %q", in, got, want)
		}
		if got := fmt.Sprint(PeerID(in)); got != want {
			t.Errorf("fmt.Sprint(PeerID(%x)) = %q, want %q", in, got, want)
		}
	}
}
