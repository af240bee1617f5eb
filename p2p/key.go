package p2p

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/pnet"
)

// LoadOrCreateKey returns the identity key stored at path, creating it if
// the file does not exist.
//
// A new key is Ed25519, written in libp2p's protobuf key encoding
// (crypto.MarshalPrivateKey) with mode 0600; missing parent directories are
// created with mode 0700. The file appears atomically (written to a
// temporary file, then linked into place), so a concurrent or interrupted
// run never leaves a half-written key, and if two processes race, both end
// up with the key that won. An existing file that cannot be read or decoded
// is an error and is left untouched: losing a key means losing the peer's
// identity, so it is never silently replaced.
func LoadOrCreateKey(path string) (crypto.PrivKey, error) {
	if path == "" {
		return nil, errors.New("p2p: key file path is empty")
	}
	k, err := readKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("p2p: create key directory: %w", err)
	}
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("p2p: generate key: %w", err)
	}
	data, err := crypto.MarshalPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("p2p: encode key: %w", err)
	}

	tmp, err := os.CreateTemp(dir, ".key-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("p2p: create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("p2p: create key file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("p2p: write key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("p2p: write key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("p2p: write key file: %w", err)
	}
	// Link, unlike Rename, fails if the target exists: a key created by a
	// concurrent run wins and is read back below.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readKey(path)
		}
		return nil, fmt.Errorf("p2p: create key file: %w", err)
	}
	return priv, nil
}

// readKey reads and decodes a key file. A missing file is reported with an
// error wrapping fs.ErrNotExist.
func readKey(path string) (crypto.PrivKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("p2p: read key file: %w", err)
	}
	k, err := crypto.UnmarshalPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("p2p: key file %s is corrupt or not a libp2p private key (left untouched): %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warnw("identity key file is readable by others; chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
	}
	return k, nil
}

// ParsePSK decodes a pre-shared key for Config.PSK. It accepts the standard
// libp2p/IPFS swarm.key format
//
//	/key/swarm/psk/1.0.0/
//	/base16/
//	<64 hex digits>
//
// (also /base64/ and /bin/ encodings), or a bare line of 64 hex digits.
func ParsePSK(data []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 64 {
		if k, err := hex.DecodeString(string(trimmed)); err == nil {
			return k, nil
		}
	}
	k, err := pnet.DecodeV1PSK(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("p2p: PSK (want a /key/swarm/psk/1.0.0/ file or 64 hex digits): %w", err)
	}
	return k, nil
}

// ReadPSKFile reads a pre-shared key file; see [ParsePSK].
func ReadPSKFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("p2p: read PSK file: %w", err)
	}
	return ParsePSK(data)
}
