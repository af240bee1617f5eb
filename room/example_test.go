package room

import (
	"context"
	"fmt"
	"slices"
)

func ExampleValidateID() {
	for _, id := range []string{"lobby", "team/alpha", "", "tab\there"} {
		fmt.Println(ValidateID(id))
	}
	// Output:
	// <nil>
	// room: invalid room id "team/alpha": contains '/'
	// room: invalid room id: empty
	// room: invalid room id "tab\there": contains control character U+0009
}

// Two peers in one room. An in-memory test network stands in for the
// gossip package's GossipSub network.
func ExampleRoom_Watch() {
	b := newBus()
	cfg := LocalConfig()
	alice, err := New("lobby", Identity{Peer: "alice", Name: "Alice"}, cfg, b.join("alice"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer alice.Close()
	// Forward-only events: read the state first, then watch.
	fmt.Println("members:", len(alice.Members()))
	w := alice.Watch()
	defer w.Close()

	bob, err := New("lobby", Identity{Peer: "bob", Name: "Bob"}, cfg, b.join("bob"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bob.Close()
	_ = bob.SetJSON("cursor", map[string]int{"x": 10, "y": 20})

	ctx := context.Background()
	for done := false; !done; {
		ev, err := w.Next(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		switch ev.Type {
		case MemberJoined:
			fmt.Println(ev.Member.Name, "joined")
		case PresenceChanged:
			if slices.Contains(ev.Change.Added, "cursor") {
				var c struct{ X, Y int }
				_, _ = alice.GetJSON(ev.Change.Peer, "cursor", &c)
				fmt.Println("bob's cursor:", c.X, c.Y)
				_ = bob.Leave(ctx)
			}
		case MemberLeft:
			fmt.Println(ev.Member.Name, "left:", ev.Reason)
			done = true
		}
	}
	fmt.Println("members:", len(alice.Members()))
	// Output:
	// members: 1
	// Bob joined
	// bob's cursor: 10 20
	// Bob left: left
	// members: 1
}
