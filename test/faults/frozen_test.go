package faults

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/convene-p2p/convene/internal/proc"
	"github.com/convene-p2p/convene/room"
)

// frozenBound is the documented bound (docs/PROTOCOL.md 2.8a, issue 14.3):
// a frozen member is dropped everywhere within about 5 s, whatever the
// room Timeout. The tests assert a generous margin over it, below half the
// default Timeout, so that only the old behaviour (a drop at Timeout)
// fails them on a loaded machine.
const frozenBound = 5 * time.Second

// frozenRoom starts A (the bootstrap), B and C with the default Timeout
// (30 s) in room r, and waits until each sees the other two.
func frozenRoom(t *testing.T) (a, b, c *proc.Proc, pa, pb, pc string) {
	t.Helper()
	timeout := room.DefaultTimeout
	a = proc.Start(t, "A", proc.Options{}, append(proc.LocalArgs("A", timeout), "--room", "r")...)
	ra := a.Ready(startup)
	boot := proc.TCPAddr(t, ra, "/ip4/127.0.0.1/tcp/")
	pa = ra.Str("peer")
	b = proc.Start(t, "B", proc.Options{}, append(proc.LocalArgs("B", timeout), "--room", "r", "--bootstrap", boot)...)
	pb = b.Ready(startup).Str("peer")
	c = proc.Start(t, "C", proc.Options{}, append(proc.LocalArgs("C", timeout), "--room", "r", "--bootstrap", boot)...)
	pc = c.Ready(startup).Str("peer")
	ids := map[*proc.Proc]string{a: pa, b: pb, c: pc}
	for w, self := range ids {
		for _, other := range ids {
			if other != self {
				w.Wait(20*time.Second, "all three joined", proc.Joined("r", other))
			}
		}
	}
	return
}

// Issue 14.3: a member whose process is stopped (SIGSTOP) keeps its
// connections open, so no connection closes and, before, every member held
// it until the room Timeout (30 s). Now the gossip layer's liveness checks
// find it (it answers none, and sends nothing), the rooms probe it and
// drop it with reason timeout: at A and C well within Timeout/2 (the
// documented bound is 5 s; the figure is printed). After SIGCONT it is one
// member again at both (one member-joined, no second leave), with its
// state, and B itself dropped nobody while it was stopped. 2 runs, 10 with
// CONVENE_LONG=1. On the old code A and C drop B only at 30 s: the wait
// for the drop fails at Timeout/2.
func TestFrozenMemberDroppedWithinSecondsAndBackAsOneAfterCont(t *testing.T) {
	n := reps(2, 10)
	a, b, c, pa, pb, pc := frozenRoom(t)
	var lat []time.Duration
	for i := range n {
		b.Send(fmt.Sprintf("set gen %d", i))
		for _, w := range []*proc.Proc{a, c} {
			w.Wait(20*time.Second, fmt.Sprintf("B's gen=%d", i), presence("r", pb, "gen", float64(i)))
		}
		marks := []int{a.Mark(), c.Mark()}
		mb := b.Mark()
		b.Stop()
		stopped := time.Now()
		for j, w := range []*proc.Proc{a, c} {
			ev, _ := w.WaitFrom(marks[j], room.DefaultTimeout/2, w.Name+" drops frozen B", proc.Left("r", pb))
			d := time.Since(stopped)
			lat = append(lat, d)
			if r := ev.Str("reason"); r != "timeout" {
				t.Errorf("run %d: %s dropped B with reason %q, want timeout", i, w.Name, r)
			}
			t.Logf("run %d: %s dropped frozen B after %v", i, w.Name, d.Round(time.Millisecond))
		}
		back := []int{a.Mark(), c.Mark()}
		b.Cont()
		b.Send(fmt.Sprintf("set back %d", i))
		for j, w := range []*proc.Proc{a, c} {
			w.WaitFrom(back[j], 20*time.Second, "B back with its state", presence("r", pb, "back", float64(i)))
			joins, lefts := 0, 0
			for _, e := range w.Events()[back[j]:] {
				switch {
				case proc.Joined("r", pb)(e):
					joins++
				case proc.Left("r", pb)(e):
					lefts++
				}
			}
			if joins != 1 || lefts != 0 {
				t.Fatalf("run %d: after SIGCONT %s reported %d joins and %d leaves of B, want 1 and 0; output:\n%s", i, w.Name, joins, lefts, w.Output())
			}
		}
		// B, stopped, must not have dropped its live peers on waking.
		for _, p := range []string{pa, pc} {
			if ev, _, ok := b.Find(mb, proc.Left("r", p)); ok {
				t.Fatalf("run %d: B dropped %v after it was continued; output:\n%s", i, ev, b.Output())
			}
		}
	}
	var worst time.Duration
	for _, d := range lat {
		worst = max(worst, d)
	}
	t.Logf("%d freezes: SIGSTOP -> dropped at A and C after %v (worst %v; documented bound %v, default Timeout %v)", n, lat, worst.Round(time.Millisecond), frozenBound, room.DefaultTimeout)
	if worst > 2*frozenBound {
		t.Errorf("a frozen member was dropped after %v, want about %v (at most %v here)", worst, frozenBound, 2*frozenBound)
	}
}

// The other side of issue 14.3: no false drops of a live but busy peer.
// B is starved: its process is limited to 3% of one CPU (a cgroup CPU
// quota, as in a throttled container: it runs at most 3 ms in every
// 100 ms, then waits up to 97 ms), shares that CPU (taskset) with
// 2×NumCPU busy loops at its own priority, and is kept busy by a stream of
// local commands (`state`, 500 a second on its stdin: each prints the
// whole room, none sends anything), so that it uses up its quota and
// answers late, while the only thing it sends is its heartbeat every 10 s:
// the others' liveness checks, not its traffic, must keep it in. Over a window of 8 s (more than ten liveness periods, well
// past the 5 s in which a frozen peer is dropped) neither A nor C may drop
// it, nor B them. Without the cgroup (no cgroup v1 cpu controller) the test
// runs with the CPU sharing only.
func TestBusyMemberNotDropped(t *testing.T) {
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("taskset not found")
	}
	a, b, c, pa, pb, pc := frozenRoom(t)
	const cpu = "0"
	if out, err := exec.Command("taskset", "-a", "-p", "-c", cpu, strconv.Itoa(b.Pid())).CombinedOutput(); err != nil {
		t.Fatalf("taskset B: %v\n%s", err, out)
	}
	throttled := throttle(t, b.Pid(), 3)
	for range 2 * runtime.NumCPU() {
		hog := exec.Command("taskset", "-c", cpu, "sh", "-c", "while :; do :; done")
		if err := hog.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = hog.Process.Kill(); _ = hog.Wait() })
	}
	marks := []int{a.Mark(), c.Mark(), b.Mark()}
	stop := make(chan struct{})
	fed := make(chan int)
	go func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		i := 0
		defer func() { fed <- i }()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				i++
				b.Send("state")
			}
		}
	}()
	const window = 8 * time.Second
	dropped := func(e proc.Event) bool {
		return proc.Left("r", pb)(e) || proc.Left("r", pa)(e) || proc.Left("r", pc)(e)
	}
	ev, _, err := a.Await(marks[0], window, dropped)
	close(stop)
	writes := <-fed
	if err == nil {
		t.Fatalf("A dropped a live member under CPU load: %v; output:\n%s", ev, a.Output())
	}
	for j, w := range []*proc.Proc{c, b} {
		if ev, _, ok := w.Find(marks[j+1], dropped); ok {
			t.Fatalf("%s dropped a live member under CPU load: %v; output:\n%s", w.Name, ev, w.Output())
		}
	}
	answered := 0
	for _, e := range b.Events()[marks[2]:] {
		if e.Str("type") == "state" {
			answered++
		}
	}
	t.Logf("B busy for %v (%d commands sent, %d answered in the window, cgroup CPU quota: %v, %d busy loops on its CPU): no member dropped", window, writes, answered, throttled, 2*runtime.NumCPU())
}

// throttle puts process pid (all its threads) in a new cgroup v1 cpu
// group limited to pct % of one CPU, undone when the test ends. It reports
// false if the cpu controller cannot be used here.
func throttle(t *testing.T, pid, pct int) bool {
	t.Helper()
	dir := fmt.Sprintf("/sys/fs/cgroup/cpu/convene-test-%d", pid)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Logf("no cgroup CPU quota: %v", err)
		return false
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(dir + "/cgroup.procs"); err == nil {
			for _, p := range strings.Fields(string(b)) {
				_ = os.WriteFile("/sys/fs/cgroup/cpu/cgroup.procs", []byte(p), 0)
			}
		}
		_ = os.Remove(dir)
	})
	for _, kv := range [][2]string{{"cpu.cfs_period_us", "100000"}, {"cpu.cfs_quota_us", strconv.Itoa(pct * 1000)}, {"cgroup.procs", strconv.Itoa(pid)}} {
		if err := os.WriteFile(dir+"/"+kv[0], []byte(kv[1]), 0); err != nil {
			t.Logf("no cgroup CPU quota: %s: %v", kv[0], err)
			return false
		}
	}
	return true
}
