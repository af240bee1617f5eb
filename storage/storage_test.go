package storage

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// Both adapters satisfy the same contract.
func adapters(t *testing.T) map[string]func(t *testing.T) Adapter {
	return map[string]func(t *testing.T) Adapter{
		"memory": func(t *testing.T) Adapter { return NewMemory() },
		"bolt": func(t *testing.T) Adapter {
			b, err := OpenBolt(filepath.Join(t.TempDir(), "s", "docs.bolt"), BoltOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
	}
}

func TestAdapterContract(t *testing.T) {
	ctx := context.Background()
	for name, open := range adapters(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			defer s.Close()
			if _, ok, err := s.Load(ctx, Key{"d1", "snapshot", "h"}); ok || err != nil {
				t.Fatalf("load of a missing key: ok=%v err=%v", ok, err)
			}
			keys := []Key{
				{"d1", "snapshot", "a"}, {"d1", "incremental", "b"}, {"d1", "incremental", "c"},
				{"d1x", "snapshot", "a"}, {"d\x00", "snapshot", "z"}, {"d1", "incremental\x00", "q"},
			}
			for i, k := range keys {
				if err := s.Save(ctx, k, []byte{byte(i)}); err != nil {
					t.Fatal(err)
				}
			}
			v, ok, err := s.Load(ctx, keys[1])
			if err != nil || !ok || !bytes.Equal(v, []byte{1}) {
				t.Fatalf("load: %v %v %v", v, ok, err)
			}
			got, err := s.LoadRange(ctx, Key{"d1"})
			if err != nil {
				t.Fatal(err)
			}
			var gotKeys []string
			for _, c := range got {
				gotKeys = append(gotKeys, string(EncodeKey(c.Key)))
				if !c.Key.HasPrefix(Key{"d1"}) {
					t.Errorf("LoadRange(d1) returned %q", c.Key)
				}
			}
			if len(got) != 4 || !slices.IsSorted(gotKeys) {
				t.Fatalf("LoadRange(d1) = %d chunks %q, want 4 sorted (not d1x, not d\\x00)", len(got), got)
			}
			inc, _ := s.LoadRange(ctx, Key{"d1", "incremental"})
			if len(inc) != 2 {
				t.Fatalf("LoadRange(d1, incremental) = %q: a part prefix must not match a longer part", inc)
			}
			if err := s.RemoveRange(ctx, Key{"d1", "incremental"}); err != nil {
				t.Fatal(err)
			}
			if rest, _ := s.LoadRange(ctx, Key{"d1"}); len(rest) != 2 {
				t.Fatalf("after RemoveRange: %q", rest)
			}
			if b, ok := s.(Batcher); ok {
				if err := b.Batch(ctx, []Chunk{{Key: Key{"d1", "snapshot", "new"}, Data: []byte("n")}},
					[]Key{{"d1", "snapshot", "a"}}); err != nil {
					t.Fatal(err)
				}
				rest, _ := s.LoadRange(ctx, Key{"d1", "snapshot"})
				if len(rest) != 1 || rest[0].Key[2] != "new" {
					t.Fatalf("after Batch: %q", rest)
				}
			}
			if err := s.Remove(ctx, Key{"d1x", "snapshot", "a"}); err != nil {
				t.Fatal(err)
			}
			if err := s.Remove(ctx, Key{"never"}); err != nil {
				t.Fatalf("remove of a missing key: %v", err)
			}
			if err := s.Save(ctx, nil, []byte("x")); !errors.Is(err, ErrBadKey) {
				t.Fatalf("save of an empty key: %v, want ErrBadKey", err)
			}
			all, _ := s.LoadRange(ctx, nil)
			if len(all) != 3 {
				t.Fatalf("LoadRange(all) = %q", all)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := s.Save(ctx, Key{"x"}, nil); !errors.Is(err, ErrClosed) {
				t.Fatalf("save after close: %v, want ErrClosed", err)
			}
		})
	}
}

func TestBoltKeepsDataAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "docs.bolt")
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, Key{"d", "snapshot", "h"}, []byte("data")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v, ok, err := s.Load(ctx, Key{"d", "snapshot", "h"})
	if err != nil || !ok || string(v) != "data" {
		t.Fatalf("after reopen: %q %v %v", v, ok, err)
	}
}

// A second open of a store that is in use fails with ErrLocked, within this
// process and from another process.
func TestBoltSecondOpenIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docs.bolt")
	s, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := OpenBolt(path, BoltOptions{LockTimeout: 50e6}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open in this process: %v, want ErrLocked", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperOpenBolt$")
	cmd.Env = append(os.Environ(), "CONVENE_HELPER_BOLT="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("LOCKED: storage: store is locked by another process")) {
		t.Fatalf("second process did not get ErrLocked:\n%s", out)
	}
}

func TestHelperOpenBolt(t *testing.T) {
	path := os.Getenv("CONVENE_HELPER_BOLT")
	if path == "" {
		t.Skip("helper process for TestBoltSecondOpenIsLocked")
	}
	_, err := OpenBolt(path, BoltOptions{LockTimeout: 50e6})
	if errors.Is(err, ErrLocked) {
		os.Stdout.WriteString("LOCKED: " + err.Error() + "\n")
		return
	}
	t.Fatalf("open: %v", err)
}
