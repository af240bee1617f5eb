package p2p

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestKeyFileKeepsPeerIDAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "dir", "identity.key")

	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatalf("first LoadOrCreateKey: %v", err)
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatalf("second LoadOrCreateKey: %v", err)
	}
	id1, _ := peer.IDFromPrivateKey(k1)
	id2, _ := peer.IDFromPrivateKey(k2)
	if id1 != id2 {
		t.Fatalf("peer ID changed across loads: %s then %s", id1, id2)
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode = %v, want 0600", got)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if got := di.Mode().Perm(); got != 0o700 {
		t.Errorf("created key directory mode = %v, want 0700", got)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("key directory holds %d entries, want only the key (no temp files)", len(entries))
	}

	// The same file through Config: two hosts in a row share the peer ID.
	cfg := LocalConfig()
	cfg.KeyFile = path
	h1 := newHost(t, cfg)
	if h1.ID() != id1 {
		t.Errorf("host ID %s, want key file's %s", h1.ID(), id1)
	}
	if err := h1.Close(); err != nil {
		t.Fatal(err)
	}
	h2 := newHost(t, cfg)
	if h2.ID() != id1 {
		t.Errorf("restarted host ID %s, want %s", h2.ID(), id1)
	}
}

func TestCorruptKeyFileIsAnErrorAndLeftUntouched(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.key")
	junk := []byte("this is not a protobuf key\n")
	if err := os.WriteFile(path, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreateKey(path)
	if err == nil {
		t.Fatal("LoadOrCreateKey accepted a corrupt key file")
	}
	if !strings.HasPrefix(err.Error(), "p2p: ") || !strings.Contains(err.Error(), "corrupt") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q should say p2p:, corrupt and name the file", err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, junk) {
		t.Errorf("corrupt key file was modified: %q", got)
	}

	cfg := LocalConfig()
	cfg.KeyFile = path
	if h, err := New(t.Context(), cfg); err == nil {
		h.Close()
		t.Fatal("New accepted a corrupt key file")
	}
}

func TestUnreadableKeyFileIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.key")
	if err := os.Mkdir(path, 0o700); err != nil { // a directory cannot be read as a file
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(path); err == nil || !strings.HasPrefix(err.Error(), "p2p: read key file") {
		t.Fatalf("LoadOrCreateKey on a directory: err = %v, want p2p: read key file ...", err)
	}
	if _, err := LoadOrCreateKey(""); err == nil {
		t.Fatal("LoadOrCreateKey(\"\") succeeded")
	}
}

func TestExplicitKeyOverridesKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.key")
	fileKey, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	other, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := LocalConfig()
	cfg.KeyFile = path
	cfg.Key = other
	h := newHost(t, cfg)
	want, _ := peer.IDFromPrivateKey(other)
	notWant, _ := peer.IDFromPrivateKey(fileKey)
	if h.ID() != want || h.ID() == notWant {
		t.Errorf("host ID %s, want Key's %s", h.ID(), want)
	}
}

func TestEphemeralKeyWhenNoKeyFile(t *testing.T) {
	a := newHost(t, LocalConfig())
	b := newHost(t, LocalConfig())
	if a.ID() == b.ID() {
		t.Fatal("two ephemeral hosts share a peer ID")
	}
}

func TestParsePSK(t *testing.T) {
	raw := bytes.Repeat([]byte{0xab}, 32)
	hx := hex.EncodeToString(raw)
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"swarm.key base16", "/key/swarm/psk/1.0.0/\n/base16/\n" + hx + "\n", true},
		{"bare hex", hx + "\n", true},
		{"wrong header", "/key/swarm/psk/2.0.0/\n/base16/\n" + hx + "\n", false},
		{"short", "/key/swarm/psk/1.0.0/\n/base16/\nabcd\n", false},
		{"garbage", "hello", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParsePSK([]byte(tc.in))
			if tc.ok != (err == nil) {
				t.Fatalf("ParsePSK: err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && !bytes.Equal(k, raw) {
				t.Fatalf("ParsePSK = %x, want %x", k, raw)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "p2p: ") {
				t.Errorf("error %q lacks the p2p: prefix", err)
			}
		})
	}
	path := filepath.Join(t.TempDir(), "swarm.key")
	if err := os.WriteFile(path, []byte("/key/swarm/psk/1.0.0/\n/base16/\n"+hx+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := ReadPSKFile(path); err != nil || !bytes.Equal(k, raw) {
		t.Fatalf("ReadPSKFile = %x, %v", k, err)
	}
}
