package main

// The Convene node process of the hub comparison (hub.go): the harness's
// binary started again with hubProcEnv=1 holds some of the room's nodes
// (the e2e node: a libp2p host, Convene's gossip router and room, and
// optionally the raw GossipSub baseline router) and is driven over the line
// protocol that yhub/client.mjs speaks too: one JSON request per line on
// stdin, one reply per line on stdout with the request's id, and event
// lines ({"ev": ...}) at any time.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/convene-p2p/convene/ephemeral"
	"github.com/convene-p2p/convene/room"
	"github.com/convene-p2p/convene/test/bench/internal/benchproc"
)

// hubProcEnv, set to 1, makes this binary a Convene node process
// (hubProcMain) instead of the command.
const hubProcEnv = "CONVENE_E2E_HUB_PROC"

func init() {
	if os.Getenv(hubProcEnv) == "1" {
		d, err := startHubDiag()
		if err != nil {
			fmt.Fprintln(os.Stderr, "hub node process: diagnostics:", err)
			os.Exit(1)
		}
		code := hubProcMain(os.Stdin, os.Stdout, d)
		if err := d.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "hub node process: diagnostics:", err)
			code = 1
		}
		os.Exit(code)
	}
}

// senderRec marks a send record in the log (its recv field).
const senderRec = 0xffff

// hubReq is one request of the line protocol (the fields of every op).
type hubReq struct {
	ID        int         `json:"id"`
	Op        string      `json:"op"`
	Nodes     []int       `json:"nodes,omitempty"`
	I         int         `json:"i"`
	Raw       bool        `json:"raw,omitempty"`
	URL       string      `json:"url,omitempty"`
	Peer      string      `json:"peer,omitempty"`
	Addrs     []string    `json:"addrs,omitempty"`
	Dial      []hubAddr   `json:"dial,omitempty"`
	Recvs     []int       `json:"recvs,omitempty"`
	Want      [][2]uint32 `json:"want,omitempty"` // (sender, seq)
	Mode      string      `json:"mode,omitempty"`
	Seq       uint32      `json:"seq,omitempty"`
	Hz        float64     `json:"hz,omitempty"`
	DurMs     int         `json:"dur_ms,omitempty"`
	TimeoutMs int         `json:"timeout_ms,omitempty"`
	File      string      `json:"file,omitempty"`
	Room      *hubRoomCfg `json:"room,omitempty"`
}

type hubAddr struct {
	ID    string   `json:"id"`
	Addrs []string `json:"addrs"`
}

type hubRoomCfg struct {
	TimeoutMs, HeartbeatMs, PublishMs int64
}

// gproc is the state of one Convene node process.
type gproc struct {
	ctx context.Context
	c   *cluster

	outMu sync.Mutex
	out   *bufio.Writer

	mu     sync.Mutex
	nodes  map[int]*node
	names  map[room.PeerID]int
	log    []byte
	last   map[int]map[int]uint32 // receiver → sender → newest seq held
	waiter *heldWaiter

	diag *hubDiag
}

// heldWaiter waits until every receiver in recvs holds, from every sender
// in want, a seq ≥ want's.
type heldWaiter struct {
	recvs map[int]bool
	want  map[int]uint32
	left  int
	done  chan struct{}
}

// hubProcMain serves the line protocol on in and out, with the
// diagnostics d (hubprof.go; nil: none).
func hubProcMain(in io.Reader, out io.Writer, d *hubDiag) int {
	p := &gproc{
		ctx:   context.Background(),
		c:     &cluster{start: time.Now(), byPeer: map[room.PeerID]int{}, routerOpts: d.options()},
		diag:  d,
		out:   bufio.NewWriter(out),
		nodes: map[int]*node{}, names: map[room.PeerID]int{},
		last: map[int]map[int]uint32{},
	}
	size, err := rawPayloadSize()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	p.c.rawSize = size
	p.c.roomCfg = room.DefaultConfig()
	p.c.setSink(nil, rawSinkFunc(p.arrivedRaw))
	// Answers still in flight at quit are not waited for (as before):
	// the nodes close under them.
	benchproc.Serve(in, p.handle, func(res map[string]any) { p.emit(res) })
	p.mu.Lock()
	nodes := make([]*node, 0, len(p.nodes))
	for _, n := range p.nodes {
		nodes = append(nodes, n)
	}
	p.mu.Unlock()
	for _, n := range nodes {
		n.close()
	}
	return 0
}

type rawSinkFunc func(recv, sender int, seq uint32)

func (f rawSinkFunc) raw(recv, sender int, seq uint32, _ time.Duration) { f(recv, sender, seq) }

func (p *gproc) emit(v any) {
	b, _ := json.Marshal(v)
	p.outMu.Lock()
	p.out.Write(append(b, '\n'))
	p.out.Flush()
	p.outMu.Unlock()
}

func (p *gproc) node(i int) (*node, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.nodes[i]
	if n == nil {
		return nil, fmt.Errorf("no node %d here", i)
	}
	return n, nil
}

func (p *gproc) handle(req hubReq) (map[string]any, error) {
	if req.Room != nil {
		p.mu.Lock()
		p.c.roomCfg = room.Config{
			Timeout:           time.Duration(req.Room.TimeoutMs) * time.Millisecond,
			HeartbeatInterval: time.Duration(req.Room.HeartbeatMs) * time.Millisecond,
			PublishInterval:   time.Duration(req.Room.PublishMs) * time.Millisecond,
		}
		p.mu.Unlock()
	}
	switch req.Op {
	case "hello":
		return map[string]any{"go": runtime.Version()}, nil
	case "start":
		var out []hubAddr
		for _, i := range req.Nodes {
			n, err := p.newNode(i, req.Raw)
			if err != nil {
				return nil, err
			}
			if _, err := p.setCursor(n, 0); err != nil {
				return nil, err
			}
			out = append(out, addrOf(n))
		}
		return map[string]any{"nodes": out}, nil
	case "connect":
		n, err := p.node(req.I)
		if err != nil {
			return nil, err
		}
		ai, err := addrInfo(hubAddr{ID: req.Peer, Addrs: req.Addrs})
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(p.ctx, wait)
		defer cancel()
		return nil, n.h.Connect(ctx, ai)
	case "await":
		ok := p.awaitHeld(req.Recvs, req.Want, time.Duration(req.TimeoutMs)*time.Millisecond)
		return map[string]any{"ok": ok}, nil
	case "set":
		p.diag.firstSet()
		n, err := p.node(req.I)
		if err != nil {
			return nil, err
		}
		if req.Mode == "raw" {
			p.record(senderRec, n.i, req.Seq, mono())
			return nil, n.rawTopic.Publish(p.ctx, rawPayload(p.c.rawSize, n.i, req.Seq))
		}
		_, err = p.setCursor(n, req.Seq)
		return nil, err
	case "load":
		return p.load(req)
	case "leave":
		n, err := p.node(req.I)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(p.ctx, wait)
		defer cancel()
		t := mono()
		return map[string]any{"t": t}, n.room.Leave(ctx)
	case "rejoin":
		n, err := p.node(req.I)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(p.ctx, wait)
		defer cancel()
		if err := n.room.Rejoin(ctx); err != nil {
			return nil, err
		}
		_, err = p.setCursor(n, req.Seq)
		return nil, err
	case "join":
		return p.join(req)
	case "close":
		n, err := p.node(req.I)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		_ = n.room.Leave(ctx)
		cancel()
		n.close()
		p.mu.Lock()
		delete(p.nodes, req.I)
		delete(p.last, req.I)
		p.mu.Unlock()
		return nil, nil
	case "dump":
		p.mu.Lock()
		b := p.log
		p.log = nil
		p.mu.Unlock()
		return map[string]any{"records": len(b) / 16}, os.WriteFile(req.File, b, 0o600)
	case "stats":
		u, s := cpuTime()
		tx, rx := tcpBytes()
		return map[string]any{"cpu_ns": int64(u + s), "tx": tx, "rx": rx}, nil
	}
	return nil, fmt.Errorf("unknown op %q", req.Op)
}

// newNode starts node i (host, routers) and joins the room.
func (p *gproc) newNode(i int, withRaw bool) (*node, error) {
	n, err := p.c.newNode(p.ctx, i, withRaw)
	if err != nil {
		return nil, err
	}
	n.onEvent = p.roomEvent
	p.mu.Lock()
	p.nodes[i] = n
	p.last[i] = map[int]uint32{}
	cfg := p.c.roomCfg
	p.mu.Unlock()
	if err := n.joinRoom(cfg); err != nil {
		return nil, err
	}
	return n, nil
}

func (p *gproc) setCursor(n *node, seq uint32) (uint32, error) {
	n.seq = seq
	p.record(senderRec, n.i, seq, mono())
	return seq, n.room.Set(cursorKey, cursorValue(seq))
}

func addrOf(n *node) hubAddr {
	a := hubAddr{ID: n.h.ID().String()}
	for _, m := range n.h.Addrs() {
		a.Addrs = append(a.Addrs, m.String())
	}
	return a
}

func addrInfo(a hubAddr) (peer.AddrInfo, error) {
	id, err := peer.Decode(a.ID)
	if err != nil {
		return peer.AddrInfo{}, err
	}
	ai := peer.AddrInfo{ID: id}
	for _, s := range a.Addrs {
		m, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			return peer.AddrInfo{}, err
		}
		ai.Addrs = append(ai.Addrs, m)
	}
	return ai, nil
}

// index maps a member to its harness index through its room name "n<i>".
func (p *gproc) index(n *node, pid room.PeerID, name string) (int, bool) {
	p.mu.Lock()
	j, ok := p.names[pid]
	p.mu.Unlock()
	if ok {
		return j, true
	}
	if name == "" {
		for _, m := range n.room.Members() {
			if m.Peer == pid {
				name = m.Name
			}
		}
	}
	if len(name) < 2 || name[0] != 'n' {
		return 0, false
	}
	j, err := strconv.Atoi(name[1:])
	if err != nil {
		return 0, false
	}
	p.mu.Lock()
	p.names[pid] = j
	p.mu.Unlock()
	return j, true
}

func (p *gproc) roomEvent(n *node, ev room.Event, _ time.Duration) {
	t := mono()
	switch ev.Type {
	case room.PresenceChanged:
		ch := ev.Change
		if ch.Cause != ephemeral.CauseRemote || !(slices.Contains(ch.Added, cursorKey) || slices.Contains(ch.Updated, cursorKey)) {
			return
		}
		j, ok := p.index(n, ch.Peer, "")
		if !ok {
			return
		}
		v, ok := n.room.Get(ch.Peer, cursorKey)
		if !ok {
			return
		}
		if seq, ok := parseCursor(v); ok {
			p.arrived(n.i, j, seq, t)
		}
	case room.MemberLeft:
		j, ok := p.index(n, ev.Member.Peer, ev.Member.Name)
		if !ok {
			return
		}
		p.mu.Lock()
		_, had := p.last[n.i][j]
		delete(p.last[n.i], j)
		p.mu.Unlock()
		if had {
			p.emit(map[string]any{"ev": "gone", "recv": n.i, "peer": j, "t": t, "reason": ev.Reason.String()})
		}
	}
}

func (p *gproc) arrivedRaw(recv, sender int, seq uint32) { p.arrived(recv, sender, seq, mono()) }

func (p *gproc) arrived(recv, sender int, seq uint32, t int64) {
	p.mu.Lock()
	p.recordLocked(uint16(recv), sender, seq, t)
	mine := p.last[recv]
	if mine == nil {
		p.mu.Unlock()
		return
	}
	old, had := mine[sender]
	if had && seq <= old {
		p.mu.Unlock()
		return
	}
	mine[sender] = seq
	if w := p.waiter; w != nil && w.recvs[recv] {
		if want, ok := w.want[sender]; ok && (!had || old < want) && seq >= want {
			w.left--
			if w.left == 0 {
				close(w.done)
				p.waiter = nil
			}
		}
	}
	p.mu.Unlock()
	if !had {
		p.emit(map[string]any{"ev": "seen", "recv": recv, "peer": sender, "t": t})
	}
}

func (p *gproc) record(recv uint16, sender int, seq uint32, t int64) {
	p.mu.Lock()
	p.recordLocked(recv, sender, seq, t)
	p.mu.Unlock()
}

func (p *gproc) recordLocked(recv uint16, sender int, seq uint32, t int64) {
	var r [16]byte
	binary.LittleEndian.PutUint16(r[0:], recv)
	binary.LittleEndian.PutUint16(r[2:], uint16(sender))
	binary.LittleEndian.PutUint32(r[4:], seq)
	binary.LittleEndian.PutUint64(r[8:], math.Float64bits(float64(t)))
	p.log = append(p.log, r[:]...)
}

// awaitHeld waits until every receiver (default: every node here) holds
// every wanted sender's seq, or d passes.
func (p *gproc) awaitHeld(recvs []int, want [][2]uint32, d time.Duration) bool {
	if d <= 0 {
		d = wait
	}
	w := &heldWaiter{recvs: map[int]bool{}, want: map[int]uint32{}, done: make(chan struct{})}
	p.mu.Lock()
	if recvs == nil {
		for i := range p.nodes {
			recvs = append(recvs, i)
		}
	}
	for _, r := range recvs {
		w.recvs[r] = true
	}
	for _, ws := range want {
		w.want[int(ws[0])] = ws[1]
	}
	for r := range w.recvs {
		for j, s := range w.want {
			if j == r {
				continue
			}
			if h, ok := p.last[r][j]; !ok || h < s {
				w.left++
			}
		}
	}
	if w.left == 0 {
		p.mu.Unlock()
		return true
	}
	p.waiter = w
	p.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.done:
		return true
	case <-t.C:
		p.mu.Lock()
		if p.waiter == w {
			p.waiter = nil
		}
		p.mu.Unlock()
		return false
	}
}

// join starts node i, joins the room, then dials the given members and
// waits until it holds want's cursors: t0 is the dial start, t_conn the
// first connection, t_all when it held everyone.
func (p *gproc) join(req hubReq) (map[string]any, error) {
	n, err := p.newNode(req.I, false)
	if err != nil {
		return nil, err
	}
	if _, err := p.setCursor(n, req.Seq); err != nil {
		return nil, err
	}
	var ais []peer.AddrInfo
	for _, a := range req.Dial {
		ai, err := addrInfo(a)
		if err != nil {
			return nil, err
		}
		ais = append(ais, ai)
	}
	t0 := mono()
	ctx, cancel := context.WithTimeout(p.ctx, wait)
	defer cancel()
	var first sync.Once
	var tConn int64
	var wg sync.WaitGroup
	errs := make([]error, len(ais))
	for k, ai := range ais {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = n.h.Connect(ctx, ai)
			if errs[k] == nil {
				t := mono()
				first.Do(func() { tConn = t })
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	timeout := time.Duration(req.TimeoutMs) * time.Millisecond
	ok := p.awaitHeld([]int{req.I}, req.Want, timeout)
	return map[string]any{"ok": ok, "t0": t0, "t_conn": tConn, "t_all": mono(), "addr": addrOf(n)}, nil
}

// load makes every listed node set its cursor at hz for dur (each on its own
// timer, random phase), seqs from req.Seq on.
func (p *gproc) load(req hubReq) (map[string]any, error) {
	period := time.Duration(float64(time.Second) / req.Hz)
	start := time.Now().Add(20 * time.Millisecond)
	end := start.Add(time.Duration(req.DurMs) * time.Millisecond)
	var mu sync.Mutex
	sent := 0
	last := map[string]uint32{}
	var wg sync.WaitGroup
	var errs []error
	for _, i := range req.Nodes {
		n, err := p.node(i)
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			phase := time.Duration(rand.Int64N(int64(period)))
			seq := req.Seq
			k := 0
			for {
				next := start.Add(phase + time.Duration(k)*period)
				if !next.Before(end) {
					break
				}
				time.Sleep(time.Until(next))
				if _, err := p.setCursor(n, seq); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				seq++
				k++
			}
			mu.Lock()
			sent += k
			if k > 0 {
				last[strconv.Itoa(i)] = seq - 1
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return map[string]any{"sent": sent, "last": last}, errors.Join(errs...)
}
