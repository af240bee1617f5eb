package main

// Diagnostics of a Convene node process of the hub comparison, each turned
// on by an environment variable that the harness's node processes inherit
// (so `CONVENE_E2E_HUB_CPUPROFILE=/tmp/p go run ./test/bench/e2e hub ...`
// profiles every node process of the run; the harness process itself and
// the hub's Node.js processes are not profiled):
//
//   - hubCPUProfileEnv=DIR: the process writes a CPU profile to
//     DIR/hubproc-<pid>.pprof, from its first "set" request (the first
//     latency round: start-up, connections, the join snapshots and the quiet
//     window are left out) until the harness says quit; a process killed by
//     a kill -9 or SIGSTOP trial writes none.
//   - hubCountEnv=DIR: the process counts (over its whole life and from
//     its first "set" on), per Convene router, how often
//     pubsub verified a message's signature and what became of the copy
//     (first copy, duplicate caught before verifying, duplicate caught only
//     after verifying, rejected) and writes the sums to
//     DIR/hubproc-<pid>.counts.json at quit. It walks the stack of each
//     duplicate, which costs CPU: do not time a run with it on.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

const (
	hubCPUProfileEnv = "CONVENE_E2E_HUB_CPUPROFILE"
	hubCountEnv      = "CONVENE_E2E_HUB_COUNT"
)

// hubDiag is what a node process's diagnostics hold.
type hubDiag struct {
	once   sync.Once
	prof   *os.File
	perr   error
	counts *verifyCounts
	base   VerifyCountsSnapshot // counts at the first "set"
	dir    string
}

// startHubDiag starts the diagnostics the environment asks for.
func startHubDiag() (*hubDiag, error) {
	d := &hubDiag{}
	if dir := os.Getenv(hubCPUProfileEnv); dir != "" {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("hubproc-%d.pprof", os.Getpid())))
		if err != nil {
			return nil, err
		}
		d.prof = f
	}
	if dir := os.Getenv(hubCountEnv); dir != "" {
		d.dir = dir
		d.counts = &verifyCounts{inValidate: map[uintptr]bool{}}
	}
	return d, nil
}

// firstSet starts the CPU profile, once (the handler of "set" calls it).
func (d *hubDiag) firstSet() {
	if d == nil {
		return
	}
	d.once.Do(func() {
		if d.counts != nil {
			d.base = d.counts.snapshot()
		}
		if d.prof != nil {
			d.perr = pprof.StartCPUProfile(d.prof)
		}
	})
}

// options are the pubsub options the diagnostics add to Convene's router.
func (d *hubDiag) options() []pubsub.Option {
	if d == nil || d.counts == nil {
		return nil
	}
	return []pubsub.Option{pubsub.WithRawTracer(d.counts)}
}

// stop ends the profile and writes the counts.
func (d *hubDiag) stop() error {
	if d == nil {
		return nil
	}
	var err error
	started := true
	d.once.Do(func() { started = false }) // never started: an empty profile
	if d.prof != nil {
		pprof.StopCPUProfile()
		err = errors.Join(d.perr, d.prof.Close())
	}
	if d.counts != nil {
		all := d.counts.snapshot()
		rounds := all.minus(d.base)
		if !started {
			rounds = VerifyCountsSnapshot{}
		}
		b, _ := json.MarshalIndent(map[string]VerifyCountsSnapshot{"whole_life": all, "from_first_set": rounds}, "", " ")
		if werr := os.WriteFile(filepath.Join(d.dir, fmt.Sprintf("hubproc-%d.counts.json", os.Getpid())), b, 0o644); err == nil {
			err = werr
		}
	}
	return err
}

// verifyCounts is a pubsub RawTracer that counts the fate of every message
// copy a router received. pubsub drops a copy as a duplicate in two places:
// before validation (the ID is already in the seen cache: no signature
// verification), or inside its validation pipeline right after verifying
// the signature (the ID was marked seen only then, so copies that arrived
// while the first was queued or being verified are each verified). The
// tracer tells the two apart by its caller.
type verifyCounts struct {
	received      atomic.Int64 // message copies in received RPCs
	first         atomic.Int64 // ValidateMessage: verified, first copy, passed to the topic validator
	dupVerified   atomic.Int64 // DuplicateMessage from the validation pipeline (after verifying)
	dupUnverified atomic.Int64 // DuplicateMessage before validation
	rejected      map[string]*atomic.Int64
	delivered     atomic.Int64

	mu         sync.Mutex
	inValidate map[uintptr]bool // caller PC → is it (*validation).validate
	rejMu      sync.Mutex
}

// VerifyCountsSnapshot is the JSON form of verifyCounts.
type VerifyCountsSnapshot struct {
	Received      int64            `json:"received_copies"`
	First         int64            `json:"validated_first_copies"`
	DupVerified   int64            `json:"duplicates_verified"`
	DupUnverified int64            `json:"duplicates_not_verified"`
	Delivered     int64            `json:"delivered"`
	Rejected      map[string]int64 `json:"rejected"`
}

func (c *verifyCounts) snapshot() VerifyCountsSnapshot {
	s := VerifyCountsSnapshot{
		Received: c.received.Load(), First: c.first.Load(),
		DupVerified: c.dupVerified.Load(), DupUnverified: c.dupUnverified.Load(),
		Delivered: c.delivered.Load(), Rejected: map[string]int64{},
	}
	c.rejMu.Lock()
	for k, v := range c.rejected {
		s.Rejected[k] = v.Load()
	}
	c.rejMu.Unlock()
	return s
}

func (s VerifyCountsSnapshot) minus(b VerifyCountsSnapshot) VerifyCountsSnapshot {
	r := VerifyCountsSnapshot{
		Received: s.Received - b.Received, First: s.First - b.First,
		DupVerified: s.DupVerified - b.DupVerified, DupUnverified: s.DupUnverified - b.DupUnverified,
		Delivered: s.Delivered - b.Delivered, Rejected: map[string]int64{},
	}
	for k, v := range s.Rejected {
		r.Rejected[k] = v - b.Rejected[k]
	}
	return r
}

func (c *verifyCounts) fromValidate() bool {
	var pcs [8]uintptr
	n := runtime.Callers(3, pcs[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, pc := range pcs[:n] {
		is, ok := c.inValidate[pc]
		if !ok {
			f := runtime.FuncForPC(pc - 1)
			is = f != nil && strings.HasSuffix(f.Name(), "(*validation).validate")
			c.inValidate[pc] = is
		}
		if is {
			return true
		}
	}
	return false
}

func (c *verifyCounts) ValidateMessage(*pubsub.Message) { c.first.Add(1) }

func (c *verifyCounts) DuplicateMessage(*pubsub.Message) {
	if c.fromValidate() {
		c.dupVerified.Add(1)
	} else {
		c.dupUnverified.Add(1)
	}
}

func (c *verifyCounts) RejectMessage(_ *pubsub.Message, reason string) {
	c.rejMu.Lock()
	if c.rejected == nil {
		c.rejected = map[string]*atomic.Int64{}
	}
	v := c.rejected[reason]
	if v == nil {
		v = &atomic.Int64{}
		c.rejected[reason] = v
	}
	c.rejMu.Unlock()
	v.Add(1)
}

func (c *verifyCounts) DeliverMessage(*pubsub.Message) { c.delivered.Add(1) }

func (c *verifyCounts) RecvRPC(rpc *pubsub.RPC) { c.received.Add(int64(len(rpc.GetPublish()))) }

func (c *verifyCounts) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (c *verifyCounts) OnClosedOutboundStream(peer.ID)                       {}
func (c *verifyCounts) Join(string)                                          {}
func (c *verifyCounts) Leave(string)                                         {}
func (c *verifyCounts) Graft(peer.ID, string)                                {}
func (c *verifyCounts) Prune(peer.ID, string)                                {}
func (c *verifyCounts) UndeliverableMessage(*pubsub.Message)                 {}
func (c *verifyCounts) ThrottlePeer(peer.ID)                                 {}
func (c *verifyCounts) SendRPC(*pubsub.RPC, peer.ID)                         {}
func (c *verifyCounts) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (c *verifyCounts) DropRPC(*pubsub.RPC, peer.ID)                         {}

var _ pubsub.RawTracer = (*verifyCounts)(nil)
