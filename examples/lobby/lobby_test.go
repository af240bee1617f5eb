package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/convene-p2p/convene/examples/internal/exampletest"
	"github.com/convene-p2p/convene/repo"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// player is one lobby of the test with its narration.
type player struct {
	rp    *repo.Repo
	lobby *Lobby
	out   *exampletest.Lines
}

// startLobbies starts one lobby per name on loopback repos, all connected
// to the first, each narrating into its own buffer, and waits until every
// lobby lists every player.
func startLobbies(t *testing.T, names ...string) []*player {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	rps := exampletest.Peers(t, names...)
	var ps []*player
	for i, rm := range exampletest.Join(t, "lobby-test", rps...) {
		p := &player{rp: rps[i], lobby: NewLobby(rm), out: &exampletest.Lines{}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			Narrate(ctx, p.lobby, p.out)
		}()
		ps = append(ps, p)
	}
	for _, p := range ps {
		exampletest.WaitFor(t, 10*time.Second, "every lobby to list every player", func() bool { return len(p.lobby.Players()) == len(names) })
	}
	return ps
}

// find returns the player with this name as pl sees it.
func find(pl *player, name string) (Player, bool) {
	for _, p := range pl.lobby.Players() {
		if p.Name == name {
			return p, true
		}
	}
	return Player{}, false
}

// Each player sees the others' character choice and ready flag, and the
// narration says so; the game starts (AllReady) on every peer once everyone
// is ready, and not before.
func TestPlayersSeeReadyAndCharacter(t *testing.T) {
	ps := startLobbies(t, "alice", "bob", "carol")
	alice, bob, carol := ps[0], ps[1], ps[2]

	choices := map[*player]string{alice: "wizard", bob: "knight", carol: "archer"}
	for p, c := range choices {
		if err := p.lobby.Choose(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.lobby.Choose("dragon"); err == nil {
		t.Fatal("Choose accepted an unknown character")
	}
	for _, viewer := range ps {
		for p, c := range choices {
			name := p.rp.Self().Name
			exampletest.WaitFor(t, 5*time.Second, viewer.rp.Self().Name+" to see "+name+"'s character", func() bool {
				got, ok := find(viewer, name)
				return ok && got.Character == c
			})
		}
	}
	if !strings.Contains(bob.out.String(), "alice chose wizard\n") || !strings.Contains(alice.out.String(), "bob chose knight\n") {
		t.Fatalf("narration misses the choices:\nalice:\n%s\nbob:\n%s", alice.out, bob.out)
	}

	// Alice and bob are ready; carol is not: no game yet.
	for _, p := range []*player{alice, bob} {
		if err := p.lobby.SetReady(true); err != nil {
			t.Fatal(err)
		}
	}
	if err := carol.lobby.SetReady(false); err != nil {
		t.Fatal(err)
	}
	for _, viewer := range ps {
		exampletest.WaitFor(t, 5*time.Second, viewer.rp.Self().Name+" to see alice and bob ready, carol not", func() bool {
			a, _ := find(viewer, "alice")
			b, _ := find(viewer, "bob")
			c, ok := find(viewer, "carol")
			return a.Ready && b.Ready && ok && !c.Ready
		})
		if AllReady(viewer.lobby.Players()) {
			t.Fatalf("%s starts the game although carol is not ready", viewer.rp.Self().Name)
		}
	}
	if !strings.Contains(carol.out.String(), "alice is ready\n") {
		t.Fatalf("carol's narration misses alice's ready flag:\n%s", carol.out)
	}

	// Carol gets ready: every peer starts the game.
	if err := carol.lobby.SetReady(true); err != nil {
		t.Fatal(err)
	}
	for _, viewer := range ps {
		exampletest.WaitFor(t, 5*time.Second, viewer.rp.Self().Name+" to see everyone ready", func() bool {
			return AllReady(viewer.lobby.Players())
		})
		exampletest.WaitFor(t, 5*time.Second, viewer.rp.Self().Name+" to announce the start", func() bool {
			return strings.Contains(viewer.out.String(), "all 3 players ready: the game starts!\n")
		})
	}
}

// A player's position, published by the 10 Hz game loop (Play) while it
// wanders, reaches the other player as a stream of distinct positions that
// ends exactly where the mover stopped; a keyboard step (Step) is published
// by the next tick.
func TestPositionsStreamAtTenHertz(t *testing.T) {
	ps := startLobbies(t, "alice", "bob")
	alice, bob := ps[0], ps[1]
	alicePeer := alice.rp.Self().Peer

	ctx, cancel := context.WithCancel(context.Background())
	played := make(chan error, 1)
	start := time.Now()
	go func() { played <- alice.lobby.Play(ctx, true) }()

	// Bob samples what he sees of alice's position.
	seen := map[Pos]bool{}
	exampletest.WaitFor(t, 10*time.Second, "bob to see alice at 8 distinct positions", func() bool {
		if p, ok := find(bob, "alice"); ok && p.Pos != nil {
			seen[*p.Pos] = true
		}
		return len(seen) >= 8
	})
	elapsed := time.Since(start)
	cancel()
	if err := <-played; err != nil {
		t.Fatalf("Play: %v", err)
	}
	// 8 distinct positions need at least 7 ticks after the first: 0.7 s at
	// 10 Hz. Fewer would mean the loop runs faster than its rate.
	if elapsed < 7*TickRate {
		t.Fatalf("8 positions arrived within %v: faster than %v per tick", elapsed, TickRate)
	}
	final := alice.lobby.Pos()
	exampletest.WaitFor(t, 5*time.Second, "bob to see alice's final position", func() bool {
		got, _ := find(bob, "alice")
		return got.Pos != nil && *got.Pos == final
	})
	// What bob's lobby shows is what his room holds as alice's presence.
	var held Pos
	if ok, err := bob.lobby.Room().GetJSON(alicePeer, keyPos, &held); !ok || err != nil || held != final {
		t.Fatalf("bob's room holds %+v (ok=%v, err=%v) for alice's position, want %+v", held, ok, err, final)
	}

	// A step from the keyboard is published by the next tick, not at once.
	alice.lobby.Step(-1, 0)
	stepped := alice.lobby.Pos()
	if err := alice.lobby.Tick(false); err != nil {
		t.Fatal(err)
	}
	exampletest.WaitFor(t, 5*time.Second, "bob to see alice's step", func() bool {
		got, _ := find(bob, "alice")
		return got.Pos != nil && *got.Pos == stepped
	})
}

// Render draws each player on the arena by character initial and lists the
// roster.
func TestRender(t *testing.T) {
	var b strings.Builder
	Render(&b, "lobby", []Player{
		{Peer: "a", Name: "alice", Self: true, Ready: true, Character: "wizard", Pos: &Pos{X: 0, Y: 0}},
		{Peer: "b", Name: "bob", Character: "knight", Pos: &Pos{X: ArenaW - 1, Y: ArenaH - 1}},
		{Peer: "c", Name: "carol"},
	}, false)
	out := b.String()
	rows := strings.Split(out, "\n")
	if !strings.HasPrefix(rows[2], "│W") || !strings.HasSuffix(rows[1+ArenaH], "K│") {
		t.Fatalf("players not drawn at their cells:\n%s", out)
	}
	for _, want := range []string{`Convene lobby "lobby": 3 players, 1 ready`, "alice (you)", "wizard  READY", "bob", "not ready", "(47,11)", " @  carol"} {
		if !strings.Contains(out, want) {
			t.Errorf("render lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "game starts") {
		t.Fatalf("render starts the game with players not ready:\n%s", out)
	}
}

// gate is an io.Writer whose first Write blocks until open is closed: it
// holds a narration up, as a slow terminal would, while the room moves on.
type gate struct {
	open     chan struct{}
	waiting  chan struct{} // closed when the first Write is blocked
	once     sync.Once
	openOnce sync.Once
	lines    exampletest.Lines
}

// release lets the blocked Write (and every later one) through.
func (g *gate) release() { g.openOnce.Do(func() { close(g.open) }) }

func (g *gate) Write(p []byte) (int, error) {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.waiting)
		<-g.open
	}
	return g.lines.Write(p)
}

// The narration never announces the start before the join it counts: alice
// is ready and her narration is held up (a slow terminal) while bob joins
// ready with a character, so by the time it goes on, alice's room already
// holds bob's state. It must still say "bob joined" before "all 2 players
// ready". (Before, it judged "all ready" on the room's live state and
// printed the start first.)
func TestNarrationSaysJoinBeforeAllReady(t *testing.T) {
	rps := exampletest.Peers(t, "alice", "bob")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	alice := NewLobby(exampletest.Join(t, "lobby-order", rps[0])[0])
	if err := alice.Choose("wizard"); err != nil {
		t.Fatal(err)
	}
	if err := alice.SetReady(true); err != nil {
		t.Fatal(err)
	}
	g := &gate{open: make(chan struct{}), waiting: make(chan struct{})}
	t.Cleanup(g.release) // runs before the cleanup above: Narrate must not stay blocked
	wg.Add(1)
	go func() {
		defer wg.Done()
		Narrate(ctx, alice, g)
	}()
	// Change characters until the narration, once it watches, tells one
	// of the changes: that write blocks.
	i := 0
	exampletest.WaitFor(t, 5*time.Second, "alice's narration to write", func() bool {
		select {
		case <-g.waiting:
			return true
		default:
		}
		i++
		if err := alice.Choose(Characters[i%2]); err != nil {
			t.Fatal(err)
		}
		return false
	})

	bob := NewLobby(exampletest.Join(t, "lobby-order", rps[1])[0])
	if err := bob.Choose("knight"); err != nil {
		t.Fatal(err)
	}
	if err := bob.SetReady(true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("alice's players: %+v; bob's: %+v", alice.Players(), bob.Players())
		}
	})
	exampletest.WaitFor(t, 10*time.Second, "alice's room to hold bob ready with a character", func() bool {
		return AllReady(alice.Players())
	})
	g.release()
	exampletest.WaitFor(t, 5*time.Second, "alice's narration to announce the start", func() bool {
		return strings.Contains(g.lines.String(), "all 2 players ready: the game starts!\n")
	})
	out := g.lines.String()
	// Bob's first message may reach alice before his identity (a delta
	// admits him with no name): then he is introduced by his short peer ID.
	joined := strings.Index(out, "bob joined\n")
	if joined < 0 {
		joined = strings.Index(out, shortID(bob.Room().Self().Peer)+" joined\n")
	}
	start := strings.Index(out, "all 2 players ready")
	if joined < 0 || joined > start {
		t.Fatalf("the start was announced before bob's join:\n%s", out)
	}
}

// Counts read right: "1 player", "2 players".
func TestRenderCountsPlayers(t *testing.T) {
	for n, want := range map[int]string{1: `"lobby": 1 player, 0 ready`, 2: `"lobby": 2 players, 0 ready`} {
		var b strings.Builder
		players := []Player{{Peer: "a", Name: "alice"}, {Peer: "b", Name: "bob"}}[:n]
		Render(&b, "lobby", players, false)
		if !strings.Contains(b.String(), want) {
			t.Errorf("%d players: render lacks %q:\n%s", n, want, b.String())
		}
	}
}
