package heal

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/convene-p2p/convene/internal/proc"
)

// overlayBound is the documented bound (p2p/doc.go, docs/PROTOCOL.md) for
// members that share a DHT to be one mesh again after the peer that
// linked them dies. Tests allow twice as much.
const overlayBound = 5 * time.Second

// blackhole makes namespace ns drop everything it would send to dst (a
// /32 blackhole route: connect fails, answers are never sent), or lifts
// that again.
func blackhole(t *testing.T, lan *proc.LAN, ns int, dst string, on bool) {
	t.Helper()
	op := "add"
	if !on {
		op = "del"
	}
	if out, err := exec.Command("ip", "-n", lan.NS(ns), "route", op, "blackhole", dst+"/32").CombinedOutput(); err != nil {
		t.Fatalf("ip route %s blackhole %s in %s: %v\n%s", op, dst, lan.NS(ns), err, out)
	}
}

// TestOverlaySplitByItsOnlyLinkRejoinsThroughTheDHT is issue 16.5. Three
// namespaces on one LAN, mDNS off, one bootstrap node (DHT server) and a
// member L in namespace 2, members A0–A2 in namespace 0 and B0–B2 in
// namespace 1, every one doing rendezvous in the room's namespace. While
// the room forms, A and B cannot reach each other (blackhole routes), so L
// is the only link between them: A and B know each other only through L's
// relaying. Then A and B become reachable and L is killed. Every A member
// must get a fresh update of every B member and the other way round
// (proof that the two groups are one mesh) within the bound, by
// rendezvous alone (nothing dials B for A: they never were connected).
// The short variant runs 1 round; CONVENE_LONG=1 runs 10.
func TestOverlaySplitByItsOnlyLinkRejoinsThroughTheDHT(t *testing.T) {
	rounds := 1
	if long() {
		rounds = 10
	}
	for round := range rounds {
		t.Run(fmt.Sprint(round), func(t *testing.T) { overlaySplit(t) })
	}
}

func overlaySplit(t *testing.T) {
	lan := proc.NewLAN(t, 3)
	blackhole(t, lan, 0, lan.Addr(1), true)
	blackhole(t, lan, 1, lan.Addr(0), true)

	common := []string{"--no-mdns", "--listen", "/ip4/0.0.0.0/tcp/0"}
	boot := proc.Start(t, "boot", proc.Options{Netns: lan.NS(2)},
		append([]string{"run", "--json", "--ephemeral", "--dht", "server", "--stay"}, common...)...)
	bootAddr := proc.TCPAddr(t, boot.Ready(60*time.Second), "/ip4/"+lan.Addr(2)+"/tcp/")

	room := func(ns int, name string) *member {
		args := append([]string{"run", "--json", "--timeout", "3s", "--name", name, "--room", "r", "--bootstrap", bootAddr}, common...)
		return &member{p: proc.Start(t, name, proc.Options{Netns: lan.NS(ns)}, args...), side: ns}
	}
	link := room(2, "l")
	var all []*member
	for i := range 3 {
		all = append(all, room(0, fmt.Sprintf("a%d", i)), room(1, fmt.Sprintf("b%d", i)))
	}
	for _, m := range append(all, link) {
		m.id = m.p.Ready(60 * time.Second).Str("peer")
	}
	waitAllJoined(t, append(all, link), nil, false, 60*time.Second, "start (through the link)")
	// The fault is a settled room: rendezvous lookups run every 0.5 s for
	// the first 10 s after a host's first advertisement and would join
	// the groups anyway; the overlay splits for good only after that. So
	// the split topology is held for longer than that (the fault's length,
	// not a wait for something to happen).
	hold(12 * time.Second)

	if n := tcpTo(t, lan.NS(0), lan.Addr(1)); n != 0 {
		t.Fatalf("%d connections between the groups: the link is not their only one", n)
	}
	marks := marksOf(all)
	blackhole(t, lan, 0, lan.Addr(1), false)
	blackhole(t, lan, 1, lan.Addr(0), false)
	link.p.Kill()
	killed := time.Now()
	// Fresh state from every member, after the link is gone: it can only
	// cross between the groups if they found each other.
	for _, m := range all {
		m.p.Send(`set after "` + m.p.Name + `"`)
	}
	deadline := killed.Add(2 * overlayBound)
	for _, a := range all {
		for _, b := range all {
			if a.side == b.side {
				continue
			}
			a.p.WaitFrom(marks[a], time.Until(deadline), a.p.Name+" gets "+b.p.Name+"'s update", presence("r", b.id, "after", b.p.Name))
		}
	}
	t.Logf("one mesh again %v after the link died (bound %v)", time.Since(killed).Round(time.Millisecond), overlayBound)
}

// hold lets a fault last d.
func hold(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	<-t.C
}

// presence matches a presence event in room from peer setting key to the
// JSON string value.
func presence(room, peer, key, value string) func(proc.Event) bool {
	return func(e proc.Event) bool {
		v, _ := e["value"].(string)
		return e.Str("type") == "presence" && e.Str("room") == room && e.Str("peer") == peer &&
			e.Str("key") == key && strings.EqualFold(v, value)
	}
}
