package room

import (
	"log/slog"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// mustBeDestroyed fails the test unless r is destroyed after what (its
// Done closed, status Closed).
func mustBeDestroyed(t *testing.T, r *Room, what string) {
	t.Helper()
	select {
	case <-r.Done():
	default:
		t.Fatalf("Done not closed after %s", what)
	}
	if r.Status() != Closed {
		t.Errorf("status %v after %s", r.Status(), what)
	}
}
