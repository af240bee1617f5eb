// Package testnet builds Convene nodes on real libp2p hosts for the
// integration tests under test/: Repos on loopback TCP or on mocknet hosts,
// connected on demand, event recorders, and waits on conditions with
// deadlines (never sleeps as synchronisation).
//
// Everything it starts is closed at t.Cleanup, in reverse order of creation
// (a Repo before the host it runs on, hosts before the mocknet).
package testnet

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/convene-p2p/convene/p2p"
	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
)

// Wait is the generous deadline used for conditions that normally hold
// within milliseconds: it absorbs a loaded CI machine and -race, and only
// matters when something is broken.
const Wait = 15 * time.Second

// Config returns the Repo configuration of test nodes: repo.LocalConfig
// (loopback TCP, room.LocalConfig timings) with the given display name.
func Config(name string) repo.Config {
	cfg := repo.LocalConfig()
	cfg.Name = name
	return cfg
}

// Loopback starts a Repo that builds its own loopback TCP host from cfg
// (start from Config). It is closed at cleanup.
func Loopback(t testing.TB, cfg repo.Config) *repo.Repo {
	t.Helper()
	r, err := repo.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("repo.New(%q): %v", cfg.Name, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close repo %q: %v", cfg.Name, err)
		}
	})
	return r
}

// OnHost starts a Repo on an existing libp2p host (cfg.Libp2pHost = h): a
// mocknet host, or a host the test closes itself to simulate a crash. The
// Repo is closed at cleanup; the host is not.
func OnHost(t testing.TB, h host.Host, cfg repo.Config) *repo.Repo {
	t.Helper()
	cfg.Libp2pHost = h
	return Loopback(t, cfg)
}

// Host starts a p2p.Host on loopback TCP with identity key (nil means a
// random one). It is closed at cleanup (Close is idempotent, so a test may
// close it earlier to crash the Repo running on it).
func Host(t testing.TB, key crypto.PrivKey) *p2p.Host {
	t.Helper()
	cfg := p2p.LocalConfig()
	cfg.Key = key
	h, err := p2p.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("p2p.New: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// Key returns a new Ed25519 identity key.
func Key(t testing.TB) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Mocknet returns an empty mocknet, closed at cleanup (which closes its
// hosts).
func Mocknet(t testing.TB) mocknet.Mocknet {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	return mn
}

// MockHost adds a host to mn, linked to every host already there.
func MockHost(t testing.TB, mn mocknet.Mocknet) host.Host {
	t.Helper()
	h, err := mn.GenPeer()
	if err != nil {
		t.Fatalf("mocknet GenPeer: %v", err)
	}
	for _, o := range mn.Hosts() {
		if o.ID() != h.ID() {
			if _, err := mn.LinkPeers(h.ID(), o.ID()); err != nil {
				t.Fatalf("mocknet LinkPeers: %v", err)
			}
		}
	}
	return h
}

// Connect dials b from a and fails the test if that takes longer than Wait.
func Connect(t testing.TB, a, b host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatalf("connect %s -> %s: %v", a.ID(), b.ID(), err)
	}
}

// ConnectAll connects every pair of hosts, dialling in parallel.
func ConnectAll(t testing.TB, hs ...host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(hs)*len(hs))
	for i := range hs {
		for j := i + 1; j < len(hs); j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := hs[i].Connect(ctx, peer.AddrInfo{ID: hs[j].ID(), Addrs: hs[j].Addrs()}); err != nil {
					errs <- fmt.Errorf("connect %s -> %s: %w", hs[i].ID(), hs[j].ID(), err)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// Hosts returns the hosts of the given Repos.
func Hosts(rs ...*repo.Repo) []host.Host {
	out := make([]host.Host, len(rs))
	for i, r := range rs {
		out[i] = r.Host()
	}
	return out
}

// Join joins room id on r with the Repo's room config.
func Join(t testing.TB, r *repo.Repo, id string) *room.Room {
	t.Helper()
	rm, err := r.JoinRoom(context.Background(), id, room.Config{})
	if err != nil {
		t.Fatalf("JoinRoom(%q): %v", id, err)
	}
	return rm
}

// Peer returns the room.PeerID of a Repo.
func Peer(r *repo.Repo) room.PeerID { return r.Self().Peer }

// Eventually polls cond every millisecond until it holds, failing the test
// after d. It returns how long it took.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	if !Within(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
	return time.Since(start)
}

// Announce calls say at once and then every 100 ms, as a member repeats
// its heartbeat, until cond holds; it fails the test after d. A hand-made
// peer that says hello once right after connecting may not be heard: a
// message published before the GossipSub meshes form reaches only direct
// peers, and one relayed before then is lost (LIBP2P.md §1.5).
func Announce(t testing.TB, d time.Duration, what string, say func(), cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	again := time.NewTicker(100 * time.Millisecond)
	defer again.Stop()
	for say(); !Within(time.Millisecond, cond); {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", d, what)
		case <-again.C:
			say()
		}
	}
}

// Within polls cond every millisecond for at most d and reports whether it
// held (Eventually fails the test instead).
func Within(d time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
	return true
}

// Never observes cond for d (polling every millisecond) and fails the test
// if it ever holds. It asserts an absence over a bounded window; it is not
// used to wait for something to happen.
func Never(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			t.Fatalf("%s", what)
		}
		select {
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}

// HasMembers reports whether rm's members are exactly the given peers.
func HasMembers(rm *room.Room, peers ...room.PeerID) bool {
	ms := rm.Members()
	if len(ms) != len(peers) {
		return false
	}
	want := make(map[room.PeerID]bool, len(peers))
	for _, p := range peers {
		want[p] = true
	}
	for _, m := range ms {
		if !want[m.Peer] {
			return false
		}
	}
	return true
}

// CountMember returns how many entries of rm.Members() are p.
func CountMember(rm *room.Room, p room.PeerID) int {
	n := 0
	for _, m := range rm.Members() {
		if m.Peer == p {
			n++
		}
	}
	return n
}

// Stamped is an event with the local time it was read.
type Stamped[E any] struct {
	At time.Time
	Ev E
}

// Recorder reads a stream of events on its own goroutine and keeps them
// all, so a test can wait for one and inspect the whole sequence. The
// goroutine ends at cleanup (the stream is closed) or when the stream ends.
type Recorder[E any] struct {
	mu      sync.Mutex
	evs     []Stamped[E]
	changed chan struct{} // closed and replaced on every new event
	ended   bool
	done    chan struct{}
}

// Record starts a Recorder over next; stop ends the stream (next then
// returns an error) and is called at cleanup.
func Record[E any](t testing.TB, next func(context.Context) (E, error), stop func()) *Recorder[E] {
	r := &Recorder[E]{changed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			ev, err := next(context.Background())
			r.mu.Lock()
			if err != nil {
				r.ended = true
			} else {
				r.evs = append(r.evs, Stamped[E]{At: time.Now(), Ev: ev})
			}
			close(r.changed)
			r.changed = make(chan struct{})
			r.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		stop()
		<-r.done
	})
	return r
}

// RecordRoom records the events of rm from now on.
func RecordRoom(t testing.TB, rm *room.Room) *Recorder[room.Event] {
	w := rm.Watch()
	return Record(t, w.Next, w.Close)
}

// RecordRepo records the Repo events of r from now on.
func RecordRepo(t testing.TB, r *repo.Repo) *Recorder[repo.Event] {
	w := r.Watch()
	return Record(t, w.Next, w.Close)
}

// Events returns a copy of the events recorded so far.
func (r *Recorder[E]) Events() []Stamped[E] {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Stamped[E](nil), r.evs...)
}

// Find returns the first recorded event that matches.
func (r *Recorder[E]) Find(match func(E) bool) (Stamped[E], bool) {
	for _, s := range r.Events() {
		if match(s.Ev) {
			return s, true
		}
	}
	return Stamped[E]{}, false
}

// WaitFor returns the first recorded event (since the recorder started)
// that matches, waiting up to d for it.
func (r *Recorder[E]) WaitFor(t testing.TB, d time.Duration, what string, match func(E) bool) Stamped[E] {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	seen := 0
	for {
		r.mu.Lock()
		fresh := r.evs[seen:len(r.evs):len(r.evs)]
		changed, ended := r.changed, r.ended
		r.mu.Unlock()
		// match runs without the lock: it may read the recorder itself.
		for _, s := range fresh {
			if match(s.Ev) {
				return s
			}
		}
		seen += len(fresh)
		if ended {
			t.Fatalf("event stream ended while waiting for %s", what)
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}

// MemberLeft matches a room MemberLeft event for p.
func MemberLeft(p room.PeerID) func(room.Event) bool {
	return func(ev room.Event) bool { return ev.Type == room.MemberLeft && ev.Member.Peer == p }
}

// MemberJoined matches a room MemberJoined event for p.
func MemberJoined(p room.PeerID) func(room.Event) bool {
	return func(ev room.Event) bool { return ev.Type == room.MemberJoined && ev.Member.Peer == p }
}

// Short renders a peer ID for logs.
func Short(p room.PeerID) string {
	s := repo.PeerString(p)
	if len(s) > 8 {
		return "…" + s[len(s)-6:]
	}
	return s
}

// Durations summarises a sample: min, median, max.
func Durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return fmt.Sprintf("min %v, median %v, max %v (n=%d)", s[0].Round(10*time.Microsecond),
		s[len(s)/2].Round(10*time.Microsecond), s[len(s)-1].Round(10*time.Microsecond), len(s))
}

// Cluster starts n loopback Repos named prefix0, prefix1, ..., joins each
// to room id, connects every pair and waits until every room lists all n
// members.
func Cluster(t testing.TB, n int, prefix, id string) ([]*repo.Repo, []*room.Room) {
	t.Helper()
	repos := make([]*repo.Repo, n)
	rooms := make([]*room.Room, n)
	start := time.Now()
	for i := range n {
		repos[i] = Loopback(t, Config(fmt.Sprintf("%s%d", prefix, i)))
		rooms[i] = Join(t, repos[i], id)
	}
	t.Logf("cluster: %d repos started in %v", n, time.Since(start))
	ConnectAll(t, Hosts(repos...)...)
	t.Logf("cluster: connected after %v", time.Since(start))
	for i, rm := range rooms {
		Eventually(t, Wait, fmt.Sprintf("%s%d lists %d members", prefix, i, n), func() bool { return len(rm.Members()) == n })
	}
	return repos, rooms
}
