package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/convene-p2p/convene/internal/proc"
)

// Issue 16.3: a member that leaves during a partition must not flap back
// at the heal. A, B and X are on one LAN (network namespaces); B and X
// joined through A. X's link is cut for a few seconds — less than the
// TCP and yamux timeouts, so the connections survive — and X drops A and
// B (timeout). During the cut B quits: its goodbye reaches A, and A's
// connection to X queues B's last heartbeats and the goodbye. When the
// link is back, X gets them in one flush and must not show B joining (and
// leaving again); it does see A again. 2 cuts, 6 with CONVENE_LONG=1.
func TestLeaverDoesNotFlapBackAtHeal(t *testing.T) {
	const timeout = 3 * time.Second
	for i := range reps(2, 6) {
		t.Run(fmt.Sprint(i), func(t *testing.T) { flapAtHeal(t, timeout) })
		if t.Failed() {
			break
		}
	}
}

func flapAtHeal(t *testing.T, timeout time.Duration) {
	lan := proc.NewLAN(t, 3)
	const a, b, x = 0, 1, 2
	args := func(name string, i int, boot ...string) []string {
		s := []string{"run", "--json", "--no-mdns", "--dht", "off", "--listen", "/ip4/" + lan.Addr(i) + "/tcp/0",
			"--timeout", timeout.String(), "--name", name, "--room", "r"}
		for _, bt := range boot {
			s = append(s, "--bootstrap", bt)
		}
		return s
	}
	pa := proc.Start(t, "A", proc.Options{Netns: lan.NS(a)}, args("A", a)...)
	ra := pa.Ready(startup)
	boot := proc.TCPAddr(t, ra, "/ip4/"+lan.Addr(a)+"/tcp/")
	pb := proc.Start(t, "B", proc.Options{Netns: lan.NS(b)}, args("B", b, boot)...)
	px := proc.Start(t, "X", proc.Options{Netns: lan.NS(x)}, args("X", x, boot)...)
	idA, idB := ra.Str("peer"), pb.Ready(startup).Str("peer")
	px.Ready(startup)
	px.Wait(20*time.Second, "X sees A", proc.Joined("r", idA))
	px.Wait(20*time.Second, "X sees B", proc.Joined("r", idB))
	pb.Send("set where \"before\"")
	px.Wait(20*time.Second, "X sees B's presence", presence("r", idB, "where", "before"))

	// Mark before the cut: the drops come a Timeout after it, but the ip
	// command itself can take seconds when other tests create or delete
	// namespaces at the same time.
	m := px.Mark()
	lan.Down(x)
	for _, id := range []string{idA, idB} {
		if ev, _ := px.WaitFrom(m, 3*timeout, "X drops a member during the cut", proc.Left("r", id)); ev.Str("reason") != "timeout" {
			t.Fatalf("X dropped %s with reason %q, want timeout", id, ev.Str("reason"))
		}
	}
	mA := pa.Mark()
	pb.Send("quit")
	if ev, _ := pa.WaitFrom(mA, 10*time.Second, "A sees B leave", proc.Left("r", idB)); ev.Str("reason") != "left" {
		t.Fatalf("A saw B leave with reason %q, want left", ev.Str("reason"))
	}
	pb.WaitExit(10 * time.Second)

	heal := px.Mark()
	lan.Up(x)
	px.WaitFrom(heal, 20*time.Second, "X sees A again after the heal", proc.Joined("r", idA))
	// A's next write goes over the same connection, behind everything
	// queued during the cut: once X shows it, the flush is in. Then watch
	// for two seconds (well past the readmission hold) for B.
	pa.Send("set mark 1")
	px.WaitFrom(heal, 10*time.Second, "A's write after the heal", presence("r", idA, "mark", 1.0))
	flap := func(e proc.Event) bool { return proc.Joined("r", idB)(e) || proc.Left("r", idB)(e) }
	if ev, _, err := px.Await(heal, 2*time.Second, flap); err == nil {
		t.Fatalf("X reported %v for B, who left during the cut; X's output:\n%s", ev, px.Output())
	}
}
