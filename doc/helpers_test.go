package doc

import (
	"context"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t testing.TB, id string, opts Options) *Handle {
	t.Helper()
	h, err := Open(context.Background(), id, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return h
}

func mustChange(t testing.TB, h *Handle, fn func(tx *Tx) error) {
	t.Helper()
	if err := h.Change(fn); err != nil {
		t.Fatal(err)
	}
}

func get(t testing.TB, h *Handle, p ...any) any {
	t.Helper()
	v, _, err := h.Get(Path(p))
	if err != nil {
		t.Fatal(err)
	}
	return v
}
