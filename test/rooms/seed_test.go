package rooms_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"github.com/convene-p2p/convene/room"
	tn "github.com/convene-p2p/convene/test/internal/testnet"
)

// The seed's "should sync presence between peers": A sets cursor
// {x:100,y:200}; B's States() holds, under A's peer ID, exactly
// {"cursor": {"x":100,"y":200}}.
func TestSeedPresenceSetInAAppearsInBUnderAsPeerID(t *testing.T) {
	a := tn.Loopback(t, tn.Config(""))
	b := tn.Loopback(t, tn.Config(""))
	roomA := tn.Join(t, a, "lobby")
	roomB := tn.Join(t, b, "lobby")
	tn.Connect(t, a.Host(), b.Host())
	tn.Eventually(t, tn.Wait, "B lists A as a member", func() bool { return tn.CountMember(roomB, tn.Peer(a)) == 1 })

	if err := roomA.SetJSON("cursor", map[string]int{"x": 100, "y": 200}); err != nil {
		t.Fatal(err)
	}

	want := map[string]any{"cursor": map[string]any{"x": 100.0, "y": 200.0}}
	var got map[string]any
	tn.Eventually(t, tn.Wait, "A's cursor in B's States()", func() bool {
		got = decodeState(t, roomB.States()[tn.Peer(a)])
		return reflect.DeepEqual(got, want)
	})
	t.Logf("B: States()[%s] = %v", tn.Short(tn.Peer(a)), got)
}

// The seed's "should track room members": A named Alice and B named Bob
// each list two members, named Alice and Bob.
func TestSeedAliceAndBobEachListTwoMembersNamedAliceAndBob(t *testing.T) {
	a := tn.Loopback(t, tn.Config("Alice"))
	b := tn.Loopback(t, tn.Config("Bob"))
	roomA := tn.Join(t, a, "lobby")
	roomB := tn.Join(t, b, "lobby")
	tn.Connect(t, a.Host(), b.Host())

	for _, rm := range []*room.Room{roomA, roomB} {
		tn.Eventually(t, tn.Wait, rm.Self().Name+" lists 2 members", func() bool { return len(rm.Members()) == 2 })
		ms := rm.Members()
		if len(ms) != 2 {
			t.Fatalf("%s lists %d members, want 2", rm.Self().Name, len(ms))
		}
		names := []string{ms[0].Name, ms[1].Name}
		slices.Sort(names)
		if !slices.Equal(names, []string{"Alice", "Bob"}) {
			t.Errorf("%s lists members named %v, want [Alice Bob]", rm.Self().Name, names)
		}
	}
}

// decodeState turns a member's raw presence into JSON values.
func decodeState(t testing.TB, s map[string][]byte) map[string]any {
	t.Helper()
	if s == nil {
		return nil
	}
	out := make(map[string]any, len(s))
	for k, v := range s {
		var x any
		if err := json.Unmarshal(v, &x); err != nil {
			t.Fatalf("key %q: %q is not JSON: %v", k, v, err)
		}
		out[k] = x
	}
	return out
}
