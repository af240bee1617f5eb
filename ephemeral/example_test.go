package ephemeral_test

import (
	"fmt"
	"time"

	"github.com/convene-p2p/convene/ephemeral"
)

// Two stores, one per peer: alice sets her cursor, encodes the delta, and bob applies it
// as data signed by alice.
func Example() {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	alice, _ := ephemeral.New(ephemeral.Config{Self: "alice", Epoch: uint64(start.UnixMilli())})
	bob, _ := ephemeral.New(ephemeral.Config{Self: "bob", Epoch: uint64(start.UnixMilli())})

	change, _ := alice.Set(start, "cursor", []byte(`{"x":100,"y":200}`))
	fmt.Println("alice:", change.Cause, "added", change.Added)

	delta := alice.EncodeDelta() // publish this; the network authenticates alice as signer
	fmt.Println("delta bytes:", len(delta))

	changes, err := bob.Apply(start.Add(5*time.Millisecond), "alice", delta)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range changes {
		fmt.Println("bob:", string(c.Peer), c.Cause, "added", c.Added)
	}
	v, _ := bob.Get("alice", "cursor")
	fmt.Println("bob sees:", string(v))

	// Nothing changed since: nothing to send.
	fmt.Println("next delta:", alice.EncodeDelta() == nil)
	// Output:
	// alice: local added [cursor]
	// delta bytes: 35
	// bob: alice remote added [cursor]
	// bob sees: {"x":100,"y":200}
	// next delta: true
}

// Liveness runs on the receiver's clock: a peer not heard from for Timeout is dropped, and
// a key with a TTL vanishes TTL after the receiver got it.
func ExampleStore_Expire() {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	alice, _ := ephemeral.New(ephemeral.Config{Self: "alice", Epoch: 1})
	bob, _ := ephemeral.New(ephemeral.Config{Self: "bob", Epoch: 1, Timeout: 30 * time.Second})

	_, _ = alice.Set(start, "name", []byte("Alice"))
	_, _ = alice.SetTTL(start, "typing", []byte("true"), 10*time.Second)
	_, _ = bob.Apply(start, "alice", alice.EncodeDelta())

	next, _ := bob.NextDeadline()
	fmt.Println("next deadline in", next.Sub(start))
	for _, c := range bob.Expire(next) {
		fmt.Println(string(c.Peer), c.Cause, "removed", c.Removed, "gone", c.Gone)
	}

	next, _ = bob.NextDeadline()
	fmt.Println("next deadline in", next.Sub(start))
	for _, c := range bob.Expire(next) {
		fmt.Println(string(c.Peer), c.Cause, "removed", c.Removed, "gone", c.Gone)
	}
	var peers []string // fake IDs in this example: print their bytes, not PeerID.String
	for _, p := range bob.Peers() {
		peers = append(peers, string(p))
	}
	fmt.Println("peers:", peers)
	// Output:
	// next deadline in 10s
	// alice timeout removed [typing] gone false
	// next deadline in 30s
	// alice timeout removed [name] gone true
	// peers: [bob]
}

// A restarted peer (new epoch) replaces its old state at once, even though its counter
// starts again from 1.
func ExampleStore_Apply_restart() {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	bob, _ := ephemeral.New(ephemeral.Config{Self: "bob", Epoch: 1})

	before, _ := ephemeral.New(ephemeral.Config{Self: "alice", Epoch: 100})
	for i := range 50 {
		_, _ = before.Set(now, "cursor", fmt.Appendf(nil, "%d", i))
	}
	_, _ = before.Set(now, "selection", []byte("1-5"))
	_, _ = bob.Apply(now, "alice", before.EncodeDelta())

	after, _ := ephemeral.New(ephemeral.Config{Self: "alice", Epoch: 200}) // restarted
	_, _ = after.Set(now, "cursor", []byte("0"))
	changes, _ := bob.Apply(now, "alice", after.EncodeDelta())
	fmt.Printf("updated %v removed %v\n", changes[0].Updated, changes[0].Removed)
	fmt.Println(bob.Version("alice"))
	// Output:
	// updated [cursor] removed [selection]
	// {200 1} true
}
