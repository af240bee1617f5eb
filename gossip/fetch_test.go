package gossip

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/ephemeral"

	"github.com/convene-p2p/convene/room/roomnet"
)

// stateEpoch is the epoch of presence's snapshots: an envelope carrying
// one must have the same epoch.
const stateEpoch = 1_767_225_600_000

// presence returns an ephemeral snapshot of id's own state at stateEpoch
// with the given key/value pairs, as id's store would encode it.
func presence(t testing.TB, id peer.ID, kv ...string) []byte {
	t.Helper()
	return presenceAt(t, id, stateEpoch, kv...)
}

// presenceAt is presence at the given epoch.
func presenceAt(t testing.TB, id peer.ID, epoch uint64, kv ...string) []byte {
	t.Helper()
	s, err := ephemeral.New(ephemeral.Config{Self: ephemeral.PeerID(id), Epoch: epoch})
	if err != nil {
		t.Fatalf("ephemeral.New: %v", err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if _, err := s.Set(time.Now(), kv[i], []byte(kv[i+1])); err != nil {
			t.Fatalf("ephemeral Set: %v", err)
		}
	}
	snap := s.EncodeSnapshot(ephemeral.PeerID(id))
	if len(snap) == 0 {
		t.Fatal("ephemeral EncodeSnapshot returned nothing")
	}
	return snap
}

func randomPeerID(t testing.TB) peer.ID {
	t.Helper()
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestFetchReturnsServedState(t *testing.T) {
	a, b := newNode(t, Config{}), newNode(t, Config{})
	ma, mb := join(t, a, "lobby"), join(t, b, "lobby")
	connect(t, a.h, b.h)
	ctx := context.Background()

	hb := roomnet.Message{
		Kind: roomnet.KindHeartbeat, Epoch: stateEpoch, Name: "Bob", Meta: map[string]string{"color": "blue"},
		State: presence(t, b.id(), "cursor", `{"x":1,"y":2}`),
	}
	mb.t.Serve(func() (roomnet.Served, bool) { return roomnet.Served{State: hb}, true })
	got, err := ma.t.Fetch(ctx, roomnet.PeerID(b.id()))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if !sameMessage(got.State, hb) || len(got.Relayed) != 0 {
		t.Fatalf("Fetch = %+v, want %+v", got, hb)
	}

	mb.t.Serve(func() (roomnet.Served, bool) { return roomnet.Served{}, false })
	if _, err := ma.t.Fetch(ctx, roomnet.PeerID(b.id())); !errors.Is(err, ErrRefused) {
		t.Fatalf("Fetch with Serve refusing = %v, want ErrRefused", err)
	}
	mb.t.Serve(nil)
	if _, err := ma.t.Fetch(ctx, roomnet.PeerID(b.id())); !errors.Is(err, ErrRefused) {
		t.Fatalf("Fetch with no Serve = %v, want ErrRefused", err)
	}
	if st := mb.t.Stats(); st.FetchServed != 1 || st.FetchRefused != 2 {
		t.Fatalf("server stats %+v, want 1 served, 2 refused", st)
	}

	// a is in "other", b is not.
	other := join(t, a, "other")
	if _, err := other.t.Fetch(ctx, roomnet.PeerID(b.id())); !errors.Is(err, ErrNotInRoom) {
		t.Fatalf("Fetch of a room the peer is not in = %v, want ErrNotInRoom", err)
	}
	// A peer that does not speak the protocol at all.
	plain := newHost(t)
	connect(t, a.h, plain)
	if _, err := ma.t.Fetch(ctx, roomnet.PeerID(plain.ID())); err == nil {
		t.Fatal("Fetch from a host without the protocol succeeded")
	}
	if _, err := ma.t.Fetch(ctx, roomnet.PeerID(a.id())); err == nil {
		t.Fatal("Fetch from self succeeded")
	}
}

// A server that answers with someone else's state, or with anything that
// would not pass the topic validator, is rejected.
func TestFetchRejectsForgedReply(t *testing.T) {
	a := newNode(t, Config{MaxMessageSize: 4096})
	ma := join(t, a, "lobby")
	evil := newHost(t)
	connect(t, a.h, evil)
	victim := randomPeerID(t)

	encode := func(m roomnet.Message) []byte {
		b, err := EncodeMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		return encodeFetchReply(fetchOK, b, nil, 4096)
	}
	tests := []struct {
		name    string
		reply   []byte
		want    error
		counted bool
	}{
		{"someone else's state", encode(roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: 1, State: presence(t, victim, "name", "victim")}), ErrWrongAuthor, true},
		{"someone else's state in a hello", encode(roomnet.Message{Kind: roomnet.KindHello, Epoch: 1, State: presence(t, victim, "k", "v")}), ErrWrongAuthor, true},
		{"wrong kind", encode(roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: []byte("x")}), ErrMalformed, true},
		{"undecodable state", encode(roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: 1, State: []byte{0xff, 0xfe, 0xfd}}), ErrMalformed, true},
		{"garbage envelope", encodeFetchReply(fetchOK, []byte{0xff, 0x01}, nil, 4096), ErrMalformed, true},
		{"oversized envelope", encode(roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: 1, Name: "x", Meta: map[string]string{"a": strings.Repeat("v", 1000), "b": strings.Repeat("v", 1000), "c": strings.Repeat("v", 1000), "d": strings.Repeat("v", 1000), "e": strings.Repeat("v", 1000)}}), ErrTooLarge, false},
		{"unknown status", []byte{0x7f}, ErrMalformed, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evil.SetStreamHandler(FetchProtocol, func(s network.Stream) {
				_, _ = io.ReadAll(io.LimitReader(s, 1024))
				_, _ = s.Write(tc.reply)
				_ = s.Close()
			})
			before := ma.t.Stats().FetchInvalid
			_, err := ma.t.Fetch(context.Background(), roomnet.PeerID(evil.ID()))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Fetch = %v, want %v", err, tc.want)
			}
			if counted := ma.t.Stats().FetchInvalid - before; counted != map[bool]uint64{true: 1}[tc.counted] {
				t.Fatalf("FetchInvalid grew by %d", counted)
			}
		})
	}
}

// A server that never answers costs the client at most FetchTimeout, and
// closing the Topic aborts a Fetch in flight.
func TestFetchTimeoutAndCloseAbort(t *testing.T) {
	a := newNode(t, Config{FetchTimeout: 200 * time.Millisecond})
	ma := join(t, a, "lobby")
	silent := newHost(t)
	release := make(chan struct{})
	silent.SetStreamHandler(FetchProtocol, func(s network.Stream) {
		<-release
		_ = s.Reset()
	})
	defer close(release)
	connect(t, a.h, silent)

	start := time.Now()
	_, err := ma.t.Fetch(context.Background(), roomnet.PeerID(silent.ID()))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch from a silent peer = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Fetch took %v with FetchTimeout 200ms", d)
	}

	done := make(chan error, 1)
	go func() {
		_, err := ma.t.Fetch(context.Background(), roomnet.PeerID(silent.ID()))
		done <- err
	}()
	ma.close()
	if err := <-done; !errors.Is(err, roomnet.ErrNetworkClosed) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch during Close = %v", err)
	}
}
