package repo_test

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/room"
)

// start runs a Repo on loopback (repo.LocalConfig: no discovery, short room
// timings) under a display name.
func start(name string) *repo.Repo {
	cfg := repo.LocalConfig()
	cfg.Name = name
	r, err := repo.New(context.Background(), cfg)
	if err != nil {
		panic(err) // examples only
	}
	return r
}

// connect dials b from a by address, as a bootstrap peer would be given.
func connect(a, b *repo.Repo) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, b.Addrs()[0].String()); err != nil {
		panic(err)
	}
}

// next waits (with a deadline) for the first event of w that matches.
func next(w *room.Watcher, match func(room.Event) bool) (room.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		ev, err := w.Next(ctx)
		if err != nil || match(ev) {
			return ev, err
		}
	}
}

// The member list: who is in the room, self included. Read the list first,
// then follow joins and leaves on a watcher.
func Example_memberList() {
	alice, bob := start("Alice"), start("Bob")
	defer alice.Close()
	defer bob.Close()
	ctx := context.Background()

	lobby, err := alice.JoinRoom(ctx, "lobby", room.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("members:", len(lobby.Members())) // just Alice
	w := lobby.Watch()
	defer w.Close()

	if _, err := bob.JoinRoom(ctx, "lobby", room.Config{}); err != nil {
		fmt.Println(err)
		return
	}
	connect(bob, alice)
	ev, err := next(w, func(ev room.Event) bool { return ev.Type == room.MemberJoined })
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ev.Member.Name, "joined")

	var names []string
	for _, m := range lobby.Members() {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	fmt.Println("members:", names)

	if err := bob.LeaveRoom(ctx, "lobby"); err != nil {
		fmt.Println(err)
		return
	}
	ev, err = next(w, func(ev room.Event) bool { return ev.Type == room.MemberLeft })
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ev.Member.Name, "left:", ev.Reason)
	// Output:
	// members: 1
	// Bob joined
	// members: [Alice Bob]
	// Bob left: left
}

// Cursors: each member publishes its own position; everyone reads
// everyone's. Sets are coalesced (at most one publish per PublishInterval),
// so a cursor moving at 60 Hz costs a bounded rate, and the last position
// always arrives.
func Example_cursors() {
	alice, bob := start("Alice"), start("Bob")
	defer alice.Close()
	defer bob.Close()
	ctx := context.Background()

	board, _ := alice.JoinRoom(ctx, "board", room.Config{})
	bobBoard, _ := bob.JoinRoom(ctx, "board", room.Config{})
	w := board.Watch()
	defer w.Close()
	connect(bob, alice)

	type cursor struct{ X, Y int }
	for i := 0; i <= 100; i++ { // a burst of moves
		_ = bobBoard.SetJSON("cursor", cursor{X: i, Y: 2 * i})
	}

	bobID := bob.Self().Peer
	_, err := next(w, func(ev room.Event) bool {
		var c cursor
		ok, _ := board.GetJSON(bobID, "cursor", &c)
		return ok && c.X == 100
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for peer, state := range board.States() {
		var c cursor
		if peer == bobID {
			_, _ = board.GetJSON(peer, "cursor", &c)
			fmt.Printf("Bob's cursor: (%d, %d), keys: %d\n", c.X, c.Y, len(state))
		}
	}
	// Output:
	// Bob's cursor: (100, 200), keys: 1
}

// A typing indicator: a key with a TTL vanishes by itself (here and at
// every receiver, each on its own clock) unless it is written again, so a
// peer that stops typing, or crashes, never stays "typing" for long.
func Example_typingIndicator() {
	alice, bob := start("Alice"), start("Bob")
	defer alice.Close()
	defer bob.Close()
	ctx := context.Background()

	chat, _ := alice.JoinRoom(ctx, "chat", room.Config{})
	bobChat, _ := bob.JoinRoom(ctx, "chat", room.Config{})
	w := chat.Watch()
	defer w.Close()
	connect(bob, alice)
	if _, err := next(w, func(ev room.Event) bool { return ev.Type == room.MemberJoined }); err != nil {
		fmt.Println(err)
		return
	}

	// Each keystroke would refresh it; here Bob types once.
	_ = bobChat.SetTTL("typing", []byte("true"), time.Second)

	typing := func(ev room.Event, in []string) bool {
		return ev.Type == room.PresenceChanged && ev.Change.Peer == bob.Self().Peer && slices.Contains(in, "typing")
	}
	if _, err := next(w, func(ev room.Event) bool { return typing(ev, ev.Change.Added) }); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("Bob is typing")
	ev, err := next(w, func(ev room.Event) bool { return typing(ev, ev.Change.Removed) })
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("Bob stopped typing:", ev.Change.Cause)
	// Output:
	// Bob is typing
	// Bob stopped typing: timeout
}

// Repo events: forward-only, across all rooms. Query first (Rooms), then
// watch.
func ExampleRepo_Watch() {
	alice, bob := start("Alice"), start("Bob")
	defer alice.Close()
	defer bob.Close()
	ctx := context.Background()

	fmt.Println("rooms:", len(alice.Rooms()))
	w := alice.Watch()
	defer w.Close()

	if _, err := alice.JoinRoom(ctx, "lobby", room.Config{}); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := bob.JoinRoom(ctx, "lobby", room.Config{}); err != nil {
		fmt.Println(err)
		return
	}
	connect(bob, alice)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for range 2 {
		ev, err := w.Next(wctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		switch ev.Type {
		case repo.RoomCreated:
			fmt.Println(ev.Type, ev.Room)
		case repo.MemberJoined:
			fmt.Println(ev.Type, ev.Room, ev.Member.Name)
		}
	}
	// Output:
	// rooms: 0
	// room-created lobby
	// room-member-joined lobby Bob
}
