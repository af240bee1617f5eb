package p2p

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The netns mDNS test re-executes this binary as a LAN node.
	if os.Getenv(lanNodeEnv) != "" {
		os.Exit(runLanNode())
	}
	goleak.VerifyTestMain(m)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// newHost starts a host and closes it when the test ends.
func newHost(t *testing.T, cfg Config) *Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// recorder collects what discovery reports through the test hooks.
type recorder struct {
	mu     sync.Mutex
	found  map[string]map[peer.ID]bool // key: source + "/" + ns
	rounds map[string]int              // completed FindPeers rounds per ns
}

func newRecorder() *recorder {
	return &recorder{found: map[string]map[peer.ID]bool{}, rounds: map[string]int{}}
}

func (r *recorder) hooks() *hooks {
	return &hooks{
		peerFound: func(source, ns string, p peer.ID) {
			r.mu.Lock()
			defer r.mu.Unlock()
			k := source + "/" + ns
			if r.found[k] == nil {
				r.found[k] = map[peer.ID]bool{}
			}
			r.found[k][p] = true
		},
		findDone: func(ns string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.rounds[ns]++
		},
	}
}

func (r *recorder) foundBy(source, ns string) map[peer.ID]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[peer.ID]bool{}
	for p := range r.found[source+"/"+ns] {
		out[p] = true
	}
	return out
}

func (r *recorder) roundsDone(ns string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rounds[ns]
}
