package proc

import (
	"testing"
	"time"
)

// Two peer processes on loopback meet in a room; SIGSTOP/SIGCONT and
// SIGKILL reach the process.
func TestTwoProcessesMeetAndSignalsReachThem(t *testing.T) {
	a := Start(t, "a", Options{}, append(LocalArgs("a", 3*time.Second), "--room", "r")...)
	ra := a.Ready(60 * time.Second)
	b := Start(t, "b", Options{}, append(LocalArgs("b", 3*time.Second), "--room", "r", "--bootstrap", TCPAddr(t, ra, "/ip4/127.0.0.1/tcp/"))...)
	rb := b.Ready(60 * time.Second)
	a.Wait(20*time.Second, "b joins", Joined("r", rb.Str("peer")))
	b.Wait(20*time.Second, "a joins", Joined("r", ra.Str("peer")))
	b.Stop()
	b.Cont()
	b.Kill()
	a.Wait(20*time.Second, "b leaves", Left("r", rb.Str("peer")))
}

// Two processes in two namespaces of one LAN find each other by mDNS; with
// the link down each drops the other.
func TestLANNodesFindEachOtherByMDNSAndLoseEachOtherWhenCut(t *testing.T) {
	lan := NewLAN(t, 2)
	args := func(name string) []string {
		return []string{"run", "--json", "--dht", "off", "--timeout", "3s", "--name", name, "--room", "r"}
	}
	a := Start(t, "a", Options{Netns: lan.NS(0)}, args("a")...)
	b := Start(t, "b", Options{Netns: lan.NS(1)}, args("b")...)
	ra, rb := a.Ready(60*time.Second), b.Ready(60*time.Second)
	a.Wait(30*time.Second, "b joins", Joined("r", rb.Str("peer")))
	b.Wait(30*time.Second, "a joins", Joined("r", ra.Str("peer")))
	lan.Down(1)
	a.Wait(30*time.Second, "b times out", Left("r", rb.Str("peer")))
}
