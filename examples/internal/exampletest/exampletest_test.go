package exampletest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"go.uber.org/goleak"

	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Peers are connected to the first, named, meet in a room joined with Join
// (WaitMembers), and are closed when their test ends.
func TestPeersConnectJoinAndClose(t *testing.T) {
	var rps []*repo.Repo
	t.Run("peers", func(t *testing.T) {
		rps = Peers(t, "alice", "bob", "carol")
		for i, rp := range rps[1:] {
			if c := rp.Host().Network().Connectedness(rps[0].ID()); c != network.Connected {
				t.Fatalf("peer %d not connected to the first: %v", i+1, c)
			}
		}
		rooms := Join(t, "t", rps...)
		WaitMembers(t, rooms...)
		for i, rm := range rooms {
			if rm.ID() != "t" || rm.Self().Name != []string{"alice", "bob", "carol"}[i] || len(rm.Members()) != 3 {
				t.Fatalf("room %d: id %q, self %+v, %d members", i, rm.ID(), rm.Self(), len(rm.Members()))
			}
		}
	})
	for _, rp := range rps {
		if _, err := rp.JoinRoom(t.Context(), "t", room.Config{}); !errors.Is(err, repo.ErrClosed) {
			t.Fatalf("JoinRoom after the test: %v, want repo.ErrClosed", err)
		}
	}
}

// Lines keeps every write, from concurrent writers.
func TestLinesConcurrentWrites(t *testing.T) {
	var l Lines
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { fmt.Fprintf(&l, "%d\n", i) })
	}
	wg.Wait()
	if n := len(l.String()); n != 16 {
		t.Fatalf("collected %d bytes, want 16: %q", n, l.String())
	}
}
