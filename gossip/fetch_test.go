package gossip

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
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
	mb.serve(func() (roomnet.Served, bool) { return roomnet.Served{State: hb}, true })
	got, err := ma.t.Fetch(ctx, roomnet.PeerID(b.id()))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if !sameMessage(got.State, hb) || len(got.Relayed) != 0 {
		t.Fatalf("Fetch = %+v, want %+v", got, hb)
	}

	mb.serve(func() (roomnet.Served, bool) { return roomnet.Served{}, false })
	if _, err := ma.t.Fetch(ctx, roomnet.PeerID(b.id())); !errors.Is(err, ErrRefused) {
		t.Fatalf("Fetch with Serve refusing = %v, want ErrRefused", err)
	}
	mb.serve(nil)
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

// nextOf returns t's next event of kind, failing after d; the events
// skipped are returned too.
func nextOf(tb testing.TB, t *Topic, d time.Duration, kind roomnet.EventKind) (roomnet.Event, []roomnet.Event) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var skipped []roomnet.Event
	for {
		ev, err := t.Next(ctx)
		if err != nil {
			tb.Fatalf("no event of kind %d within %v: %v", kind, d, err)
		}
		if ev.Kind == kind {
			return ev, skipped
		}
		skipped = append(skipped, ev)
	}
}

// queuedFetches is the number of Fetch requests waiting in t's queue.
func queuedFetches(t *Topic) int {
	t.q.mu.Lock()
	defer t.q.mu.Unlock()
	return len(t.q.fetches)
}

// A Fetch request reaches the room as an event even when the room's queue
// is full of messages (the bound that drops messages never drops it), and
// comes out ahead of that backlog; the backlog stays as it was.
func TestFetchIsAnsweredWhileTheQueueIsFull(t *testing.T) {
	const queueSize = 4
	a, b := newNode(t, Config{}), newNode(t, Config{QueueSize: queueSize})
	ma := join(t, a, "lobby")
	tb, err := b.r.Join("lobby") // not read until the fetch
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	connect(t, a.h, b.h)
	eventually(t, 5*time.Second, "a reaches b", func() bool { return len(ma.t.Peers()) == 1 })
	for i := range 2 * queueSize {
		if err := ma.t.Publish(context.Background(), roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: fmt.Appendf(nil, "m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "b's queue full and dropping", func() bool { return tb.Stats().Dropped > 0 })

	fetched := make(chan error, 1)
	go func() {
		_, err := ma.t.Fetch(context.Background(), roomnet.PeerID(b.id()))
		fetched <- err
	}()
	eventually(t, 5*time.Second, "the Fetch request queued at b", func() bool { return queuedFetches(tb) == 1 })
	ev, skipped := nextOf(t, tb, 5*time.Second, roomnet.EventFetch)
	for _, s := range skipped {
		if s.Kind == roomnet.EventMessage {
			t.Fatalf("a queued message came out before the Fetch request: %s", eventString(s))
		}
	}
	if peer.ID(ev.From) != a.id() {
		t.Fatalf("Fetch request from %s, want a", peer.ID(ev.From))
	}
	ev.Reply <- roomnet.FetchAnswer{Served: roomnet.Served{State: heartbeatOf(t, b.id())}, OK: true}
	if err := <-fetched; err != nil {
		t.Fatalf("Fetch while b's queue was full: %v", err)
	}
	if msgs, _ := queued(tb); msgs != queueSize {
		t.Fatalf("%d messages queued after the fetch, want the %d of the backlog", msgs, queueSize)
	}
}

// A Fetch request that the room does not answer (nobody polls the Topic)
// is refused as busy after half the server's FetchTimeout, well before the
// client's own deadline, and taken out of the queue; one in flight when
// the Topic closes is refused at once.
func TestUnansweredFetchIsRefusedAtTheServersDeadline(t *testing.T) {
	const serverTimeout = 400 * time.Millisecond
	a := newNode(t, Config{})
	b := newNode(t, Config{FetchTimeout: serverTimeout})
	c := newNode(t, Config{FetchTimeout: time.Minute}) // waits 30 s for its room
	ma := join(t, a, "lobby")
	tb, err := b.r.Join("lobby")
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	tc, err := c.r.Join("lobby")
	if err != nil {
		t.Fatal(err)
	}
	connect(t, a.h, b.h)
	connect(t, a.h, c.h)

	start := time.Now()
	_, err = ma.t.Fetch(context.Background(), roomnet.PeerID(b.id()))
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("Fetch of a room that never answers = %v, want ErrRefused", err)
	}
	if d := time.Since(start); d < b.r.cfg.serveWait() || d >= DefaultFetchTimeout {
		t.Fatalf("refused after %v; want after the server's wait %v, before the client's deadline %v", d, b.r.cfg.serveWait(), DefaultFetchTimeout)
	}
	if n := queuedFetches(tb); n != 0 {
		t.Fatalf("%d unanswered Fetch requests left in the queue", n)
	}
	if st := tb.Stats(); st.FetchRefused != 1 || st.FetchServed != 0 {
		t.Fatalf("b's stats %+v, want 1 refused", st)
	}

	fetched := make(chan error, 1)
	go func() {
		_, err := ma.t.Fetch(context.Background(), roomnet.PeerID(c.id()))
		fetched <- err
	}()
	eventually(t, 5*time.Second, "c's room asked", func() bool { return queuedFetches(tc) == 1 })
	closed := time.Now()
	_ = tc.Close()
	if err := <-fetched; !errors.Is(err, ErrRefused) {
		t.Fatalf("Fetch of a room closed meanwhile = %v, want ErrRefused", err)
	}
	if d := time.Since(closed); d >= c.r.cfg.serveWait()/2 {
		t.Fatalf("refused %v after the close: it waited for the deadline", d)
	}
}
