package repo_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/convene-p2p/convene/repo"
)

// recorder is a slog.Handler that keeps the "logger" attribute of every
// record, at every level.
type recorder struct {
	mu      *sync.Mutex
	loggers map[string]int
	attrs   []slog.Attr
}

func newRecorder() *recorder { return &recorder{mu: &sync.Mutex{}, loggers: map[string]int{}} }

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	name := ""
	for _, a := range h.attrs {
		if a.Key == "logger" {
			name = a.Value.String()
		}
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "logger" {
			name = a.Value.String()
		}
		return true
	})
	h.mu.Lock()
	h.loggers[name]++
	h.mu.Unlock()
	return nil
}

func (h *recorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &recorder{mu: h.mu, loggers: h.loggers, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h *recorder) WithGroup(string) slog.Handler { return h }

func (h *recorder) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.loggers[name]
}

// Config.Logger is used: the rooms and the gossip layer (pubsub included)
// of a Repo log through it, each record tagged with its subsystem. Before,
// the field was accepted and never read.
func TestConfigLoggerReceivesRoomAndGossipDiagnostics(t *testing.T) {
	rec := newRecorder()
	a := newRepo(t, func(c *repo.Config) { c.Logger = slog.New(rec) })
	b := newRepo(t, nil)
	join(t, a, "log")
	join(t, b, "log")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := a.Connect(ctx, b.Addrs()[0].String()); err != nil {
		t.Fatal(err)
	}
	// B's host goes away without a goodbye: A's room probes it, and the
	// failed probe is a room diagnostic.
	for len(a.Rooms()[0].Members()) < 2 {
		select {
		case <-ctx.Done():
			t.Fatal("A never saw B")
		case <-time.After(10 * time.Millisecond):
		}
	}
	_ = b.Host().Close()
	for rec.count("convene/room") == 0 || rec.count("pubsub") == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("records: convene/room %d, pubsub %d; want both", rec.count("convene/room"), rec.count("pubsub"))
		case <-time.After(10 * time.Millisecond):
		}
	}
}
