package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/repo"
	"github.com/convene-p2p/convene/test/bench/internal/benchproc"
)

// peerEnv, set to 1, makes this binary a Convene peer process (runPeer)
// instead of the command: the command starts itself again with it.
const peerEnv = "CONVENE_DOCSYNC_PEER"

// noAnnounceEnv, set to 1, turns the peer's head announcements off
// (-announceab).
const noAnnounceEnv = "CONVENE_DOCSYNC_NO_ANNOUNCE"

// request is one line the command sends to a peer (Go or JS, the same
// protocol: see peer.mjs).
type request struct {
	ID        int            `json:"id"`
	Op        string         `json:"op"`
	Addr      string         `json:"addr,omitempty"`
	Doc       string         `json:"doc,omitempty"`
	Create    bool           `json:"create,omitempty"`
	Key       string         `json:"key,omitempty"`
	Keys      []string       `json:"keys,omitempty"`
	Count     int            `json:"count,omitempty"`
	Rate      float64        `json:"rate,omitempty"`
	Seed      uint32         `json:"seed,omitempty"`
	Want      map[string]int `json:"want,omitempty"`
	TimeoutMs int            `json:"timeout_ms,omitempty"`
}

// genesis is every document's deterministic first change (doc.Options.Init):
// the shared text t. automerge-repo's peers get it from repo.create({t: ""}).
func genesis(tx *doc.Tx) error { return tx.Set(doc.Path{"t"}, doc.Text("")) }

func letter(x uint32) string { return string(rune('a' + (x>>16)%26)) }

// dialGate lets the host dial only the addresses given to connect.
type dialGate struct {
	mu sync.Mutex
	ok map[string]bool
}

func (g *dialGate) allow(addr string) {
	a, err := multiaddr.NewMultiaddr(addr)
	if err != nil {
		return
	}
	t, _ := peer.SplitAddr(a)
	if t == nil {
		return
	}
	g.mu.Lock()
	g.ok[t.String()] = true
	g.mu.Unlock()
}

func (g *dialGate) InterceptPeerDial(peer.ID) bool { return true }
func (g *dialGate) InterceptAddrDial(_ peer.ID, a multiaddr.Multiaddr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ok[a.String()]
}
func (g *dialGate) InterceptAccept(network.ConnMultiaddrs) bool { return true }
func (g *dialGate) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}
func (g *dialGate) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// goPeer is one Convene peer: a Repo on loopback TCP (repo.LocalConfig).
type goPeer struct {
	ctx  context.Context
	r    *repo.Repo
	gate *dialGate

	mu      sync.Mutex
	watches map[string]*watchState
}

// watchState records, per watched key, when each value of its counter
// n_<key> was first seen here: seen[key][i] is the time value i (or a
// later one) was first read after a change event.
type watchState struct {
	seen   map[string][]int64
	remote int // Changed events whose origin is a remote peer
	wake   chan struct{}
}

// runPeer serves the command's requests on stdin/stdout until stdin closes.
func runPeer(in io.Reader, out io.Writer) error {
	ctx := context.Background()
	cfg := repo.LocalConfig()
	cfg.Docs.Init = genesis
	cfg.DisableAnnouncements = os.Getenv(noAnnounceEnv) == "1"
	// Dial only what the harness named in a connect: a peer that learned
	// the other's direct listen address (identify) and redialled it would
	// bypass the counting proxy (the 0 B convergence of the last run).
	gate := &dialGate{ok: map[string]bool{}}
	cfg.Host.Options = append(cfg.Host.Options, libp2p.ConnectionGater(gate))
	r, err := repo.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer r.Close()
	p := &goPeer{ctx: ctx, r: r, gate: gate, watches: make(map[string]*watchState)}
	var outMu sync.Mutex
	enc := json.NewEncoder(out)
	benchproc.Serve(in, p.serve, func(v map[string]any) {
		outMu.Lock()
		_ = enc.Encode(v)
		outMu.Unlock()
	})()
	return nil
}

func (p *goPeer) serve(q request) (map[string]any, error) {
	ctx := p.ctx
	switch q.Op {
	case "hello":
		return map[string]any{}, nil
	case "listen":
		for _, a := range p.r.Host().Addrs() {
			na, err := manet.ToNetAddr(a)
			if err != nil || !strings.HasPrefix(na.String(), "127.0.0.1:") {
				continue
			}
			_, ps, _ := strings.Cut(na.String(), ":")
			port, err := strconv.Atoi(ps)
			if err != nil {
				continue
			}
			return map[string]any{"port": port, "peer": p.r.ID().String()}, nil
		}
		return nil, errors.New("no loopback TCP address")
	case "connect":
		p.gate.allow(q.Addr)
		if err := p.r.Connect(ctx, q.Addr); err != nil {
			return nil, err
		}
		return map[string]any{}, nil
	case "disconnect":
		// A redial (healing, a stream opened while apart) reaches only the
		// addresses the harness named: the gate refuses the direct listen
		// addresses identify taught us, so the peers meet again through
		// the counting proxy (clearing the peerstore alone did not do it).
		for _, id := range p.r.Host().Network().Peers() {
			_ = p.r.Host().Network().ClosePeer(id)
		}
		return map[string]any{}, nil
	case "open":
		h, err := p.r.DocWith(ctx, q.Doc, genesis)
		if err != nil {
			return nil, err
		}
		return map[string]any{"doc": h.ID()}, nil
	case "fetch":
		h, err := p.r.DocWith(ctx, q.Doc, genesis)
		if err != nil {
			return nil, err
		}
		p.watch(h, slices.Collect(mapKeys(q.Want)))
		return p.wait(h.ID(), q.Want, q.TimeoutMs), nil
	case "edit":
		h, err := p.r.DocWith(ctx, q.Doc, genesis)
		if err != nil {
			return nil, err
		}
		sent := make([]int64, 0, q.Count)
		x := q.Seed
		t0 := mono()
		for i := range q.Count {
			if q.Rate > 0 {
				due := t0 + int64(float64(i)*1e9/q.Rate)
				if d := due - mono(); d > 0 {
					time.Sleep(time.Duration(d))
				}
			}
			x = (x*1103515245 + 12345) & 0x7fffffff
			c := letter(x)
			sent = append(sent, mono())
			if err := h.Change(func(tx *doc.Tx) error {
				if err := tx.Set(doc.Path{"n_" + q.Key}, i); err != nil {
					return err
				}
				n, err := tx.Len(doc.Path{"t"})
				if err != nil {
					return err
				}
				return tx.Splice(doc.Path{"t"}, n, 0, c)
			}); err != nil {
				return nil, err
			}
		}
		return map[string]any{"sent": sent}, nil
	case "watch":
		h, err := p.r.DocWith(ctx, q.Doc, genesis)
		if err != nil {
			return nil, err
		}
		p.watch(h, q.Keys)
		return map[string]any{}, nil
	case "wait":
		return p.wait(q.Doc, q.Want, q.TimeoutMs), nil
	case "state":
		h, err := p.r.DocWith(ctx, q.Doc, genesis)
		if err != nil {
			return nil, err
		}
		var heads []string
		for _, x := range h.Heads() {
			heads = append(heads, x.String())
		}
		slices.Sort(heads)
		val, err := h.Value()
		if err != nil {
			return nil, err
		}
		n := map[string]any{}
		for k, x := range val {
			if strings.HasPrefix(k, "n_") {
				n[strings.TrimPrefix(k, "n_")] = x
			}
		}
		var text int
		if err := h.Read(func(tx *doc.Tx) error { text, err = tx.Len(doc.Path{"t"}); return err }); err != nil {
			return nil, err
		}
		return map[string]any{"heads": heads, "text": text, "n": n, "save": len(h.Save())}, nil
	case "rusage":
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return nil, err
		}
		return map[string]any{"cpu_ns": ru.Utime.Nano() + ru.Stime.Nano()}, nil
	case "conns":
		var addrs []string
		for _, c := range p.r.Host().Network().Conns() {
			addrs = append(addrs, c.RemoteMultiaddr().String())
		}
		return map[string]any{"addrs": addrs}, nil
	}
	return nil, fmt.Errorf("unknown op %q", q.Op)
}

func mapKeys(m map[string]int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// observe records the counters of w's keys as h holds them now.
func (p *goPeer) observe(h *doc.Handle, w *watchState) {
	t := mono()
	vals := map[string]int{}
	_ = h.Read(func(tx *doc.Tx) error {
		for k := range w.seen {
			v, ok, err := tx.Get(doc.Path{"n_" + k})
			if err == nil && ok {
				if n, ok := v.(int64); ok {
					vals[k] = int(n)
				}
			}
		}
		return nil
	})
	p.mu.Lock()
	for k, v := range vals {
		for len(w.seen[k]) <= v {
			w.seen[k] = append(w.seen[k], t)
		}
	}
	close(w.wake)
	w.wake = make(chan struct{})
	p.mu.Unlock()
}

func (p *goPeer) watch(h *doc.Handle, keys []string) {
	p.mu.Lock()
	w, ok := p.watches[h.ID()]
	if !ok {
		w = &watchState{seen: map[string][]int64{}, wake: make(chan struct{})}
		p.watches[h.ID()] = w
	}
	for _, k := range keys {
		if _, ok := w.seen[k]; !ok {
			w.seen[k] = nil
		}
	}
	p.mu.Unlock()
	if !ok {
		wt := h.Watch()
		go func() {
			defer wt.Close()
			for {
				ev, err := wt.Next(p.ctx)
				if err != nil {
					return
				}
				if ev.Type == doc.Changed && !ev.Origin.Local() {
					p.mu.Lock()
					w.remote++
					p.mu.Unlock()
				}
				p.observe(h, w) // Changed or Lagged: read the document again
			}
		}()
	}
	p.observe(h, w)
}

func (p *goPeer) wait(id string, want map[string]int, timeoutMs int) map[string]any {
	deadline := time.Now().Add(time.Duration(timeoutMs) * time.Millisecond)
	for {
		p.mu.Lock()
		w := p.watches[id]
		done := true
		for k, n := range want {
			if len(w.seen[k]) < n {
				done = false
			}
		}
		wake := w.wake
		if done || !time.Now().Before(deadline) {
			seen := map[string][]int64{}
			for k, s := range w.seen {
				seen[k] = slices.Clone(s)
			}
			res := map[string]any{"done": done, "seen": seen, "remote": w.remote, "at": mono()}
			p.mu.Unlock()
			return res
		}
		p.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// dialAddr is the multiaddr of a Convene peer listening behind port.
func dialAddr(port int, id string) (string, error) {
	pid, err := peer.Decode(id)
	if err != nil {
		return "", err
	}
	a, err := multiaddr.NewMultiaddr(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", port, pid))
	if err != nil {
		return "", err
	}
	return a.String(), nil
}

func init() {
	if os.Getenv(peerEnv) == "1" {
		if err := runPeer(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "docsync peer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}
