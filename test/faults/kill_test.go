package faults

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/convene-p2p/convene/internal/proc"
)

// Issue 16.4 and room doc ("Restart"): a member killed with SIGKILL and
// restarted at once with the same key is replaced seamlessly. A (the
// bootstrap, connected to B) probes the dead process, which fails within
// milliseconds, and holds it for the restart grace (500ms); C (connected
// to A only) gets A's suspect and holds it for the refutation window. The
// new incarnation arrives within both: gen goes from i-1 to i with no
// member-left/member-joined pair at A or C. Without the grace A shows a
// pair at the first restart. 6 restarts, 20 with CONVENE_LONG=1.
func TestKillThenRestartSameKeyIsSeamless(t *testing.T) {
	const timeout = 6 * time.Second
	n := reps(6, 20)
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	a := proc.Start(t, "A", proc.Options{}, append(proc.LocalArgs("A", timeout), "--room", "r")...)
	ra := a.Ready(startup)
	boot := proc.TCPAddr(t, ra, "/ip4/127.0.0.1/tcp/")
	c := proc.Start(t, "C", proc.Options{}, append(proc.LocalArgs("C", timeout), "--room", "r", "--bootstrap", boot)...)
	pc := c.Ready(startup).Str("peer")
	a.Wait(20*time.Second, "C joins", proc.Joined("r", pc))

	b := proc.Start(t, "B0", proc.Options{}, append(proc.LocalArgs("B", timeout), "--room", "r", "--bootstrap", boot, "--key", key)...)
	pb := b.Ready(startup).Str("peer")
	b.Send("set gen 0")
	for _, w := range []*proc.Proc{a, c} {
		w.Wait(20*time.Second, "B's gen=0", presence("r", pb, "gen", 0.0))
	}
	var lat []time.Duration
	for i := 1; i <= n; i++ {
		marks := []int{a.Mark(), c.Mark()}
		b.Kill()
		killed := time.Now()
		b = proc.Start(t, fmt.Sprintf("B%d", i), proc.Options{}, append(proc.LocalArgs("B", timeout), "--room", "r", "--bootstrap", boot, "--key", key)...)
		if got := b.Ready(startup).Str("peer"); got != pb {
			t.Fatalf("restart %d has peer ID %s, want %s", i, got, pb)
		}
		b.Send(fmt.Sprintf("set gen %d", i))
		for j, w := range []*proc.Proc{a, c} {
			w.WaitFrom(marks[j], timeout, fmt.Sprintf("gen=%d", i), presence("r", pb, "gen", float64(i)))
			if j == 0 {
				lat = append(lat, time.Since(killed))
			}
			if ev, _, ok := w.Find(marks[j], func(e proc.Event) bool {
				return proc.Left("r", pb)(e) || proc.Joined("r", pb)(e)
			}); ok {
				t.Fatalf("restart %d: %s reported %v; output:\n%s", i, w.Name, ev, w.Output())
			}
		}
	}
	t.Logf("%d restarts: kill -> new gen at A after %v", n, lat)
}
