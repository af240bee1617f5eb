package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

type listenReply struct {
	Port int    `json:"port"`
	Peer string `json:"peer"`
}

type openReply struct {
	Doc string `json:"doc"`
}

type editReply struct {
	Sent []int64 `json:"sent"`
}

type waitReply struct {
	Done   bool               `json:"done"`
	Seen   map[string][]int64 `json:"seen"`
	Remote int                `json:"remote"`
	At     int64              `json:"at"`
}

type stateReply struct {
	Heads []string       `json:"heads"`
	Text  int            `json:"text"`
	N     map[string]any `json:"n"`
	Save  int            `json:"save"`
}

// pair is two peers of one side: a listens, b reaches it through px.
type pair struct {
	s    side
	a, b *proc
	px   *proxy
	addr string // a's address behind px, as b dials it
}

func newPair(s side) (*pair, error) {
	a, err := s.start("a")
	if err != nil {
		return nil, err
	}
	b, err := s.start("b")
	if err != nil {
		a.Stop()
		return nil, err
	}
	p := &pair{s: s, a: a, b: b}
	var l listenReply
	if err := a.Call(map[string]any{"op": "listen"}, &l); err != nil {
		p.close()
		return nil, err
	}
	if p.px, err = newProxy("127.0.0.1:" + strconv.Itoa(l.Port)); err != nil {
		p.close()
		return nil, err
	}
	if p.addr, err = s.dial(p.px.Port(), l.Peer); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *pair) close() {
	var wg sync.WaitGroup
	for _, x := range []*proc{p.a, p.b} {
		wg.Add(1)
		go func() { defer wg.Done(); x.Stop() }()
	}
	wg.Wait()
	if p.px != nil {
		_ = p.px.Close()
	}
}

func (p *pair) connect() error {
	return p.b.Call(map[string]any{"op": "connect", "addr": p.addr}, nil)
}

// create makes the document on a (automerge-repo: repo.create; Convene: the
// Repo's document with the shared genesis) and returns its ID.
func create(a *proc) (string, error) {
	var o openReply
	err := a.Call(map[string]any{"op": "open", "create": true, "doc": newDocID()}, &o)
	return o.Doc, err
}

var docSeq int

func newDocID() string {
	docSeq++
	return fmt.Sprintf("bench-%d-%d", mono(), docSeq)
}

func edit(p *proc, id, key string, count int, rate float64, seed uint32) (editReply, error) {
	var e editReply
	err := p.Call(map[string]any{"op": "edit", "doc": id, "key": key, "count": count, "rate": rate, "seed": seed}, &e)
	if err == nil && len(e.Sent) != count {
		err = fmt.Errorf("%s: %d edits made, want %d", p.Name(), len(e.Sent), count)
	}
	return e, err
}

func wait(p *proc, id string, want map[string]int, o options) (waitReply, error) {
	var w waitReply
	if err := p.Call(map[string]any{"op": "wait", "doc": id, "want": want, "timeout_ms": o.timeout.Milliseconds()}, &w); err != nil {
		return w, err
	}
	if !w.Done {
		return w, fmt.Errorf("%s: not delivered within %v: %s", p.Name(), o.timeout, progressOf(w, want))
	}
	return w, nil
}

func progressOf(w waitReply, want map[string]int) string {
	var parts []string
	for k, n := range want {
		parts = append(parts, fmt.Sprintf("%s %d of %d", k, len(w.Seen[k]), n))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func state(p *proc, id string) (stateReply, error) {
	var s stateReply
	err := p.Call(map[string]any{"op": "state", "doc": id}, &s)
	return s, err
}

// sameDoc checks that the peers hold the same document (heads) and text
// of the given length.
func sameDoc(id string, text int, ps ...*proc) error {
	var first stateReply
	for i, p := range ps {
		s, err := state(p, id)
		if err != nil {
			return err
		}
		if s.Text != text {
			return fmt.Errorf("%s: text of %d characters, want %d", p.Name(), s.Text, text)
		}
		if i == 0 {
			first = s
		} else if !slices.Equal(s.Heads, first.Heads) {
			return fmt.Errorf("%s and %s: different heads %v, %v", ps[0].Name(), p.Name(), first.Heads, s.Heads)
		}
	}
	return nil
}

// throughProxy checks (Convene: the connections are listed) that b reaches a
// only through the proxy, so that the proxy saw every byte.
func (p *pair) throughProxy() error {
	var c struct {
		Addrs []string `json:"addrs"`
	}
	if err := p.b.Call(map[string]any{"op": "conns"}, &c); err != nil {
		return err
	}
	for _, a := range c.Addrs {
		if !strings.Contains(a, "/tcp/"+strconv.Itoa(p.px.Port())) {
			return fmt.Errorf("%s has a connection to %s, not through the proxy (port %d)", p.b.Name(), a, p.px.Port())
		}
	}
	return nil
}

// latencyRun: a makes warm+n small edits at rate changes/s; b, which opened
// the document, records when each one's change event came. The latencies
// of the last n (from the send time on a to the event on b) are returned.
func latencyRun(s side, o options, rate float64, n, warm int) ([]float64, error) {
	p, err := newPair(s)
	if err != nil {
		return nil, err
	}
	defer p.close()
	id, err := create(p.a)
	if err != nil {
		return nil, err
	}
	if err := p.connect(); err != nil {
		return nil, err
	}
	if err := p.b.Call(map[string]any{"op": "open", "doc": id}, nil); err != nil {
		return nil, err
	}
	if err := p.b.Call(map[string]any{"op": "watch", "doc": id, "keys": []string{"a"}}, nil); err != nil {
		return nil, err
	}
	total := warm + n
	var w waitReply
	waitB := p.b.Async(map[string]any{"op": "wait", "doc": id, "want": map[string]int{"a": total}, "timeout_ms": o.timeout.Milliseconds()}, &w)
	e, err := edit(p.a, id, "a", total, rate, 1)
	if err := errors.Join(err, waitB()); err != nil {
		return nil, err
	}
	if !w.Done {
		return nil, fmt.Errorf("%s: not delivered within %v: %s", p.b.Name(), o.timeout, progressOf(w, map[string]int{"a": total}))
	}
	if s.name == "Convene" && w.Remote == 0 {
		return nil, errors.New("convene b: no change event with a remote origin")
	}
	if err := sameDoc(id, total, p.a, p.b); err != nil {
		return nil, err
	}
	lat := make([]float64, 0, n)
	for i := warm; i < total; i++ {
		lat = append(lat, float64(w.Seen["a"][i]-e.Sent[i]))
	}
	return lat, nil
}

// fetchRun: a holds a document of changes small edits; b, a new peer,
// connects (through the proxy) and asks for it by ID. Returns the time from
// the connect request to b holding the whole document, the bytes the proxy
// carried meanwhile (both ways), and a's Save size.
func fetchRun(s side, o options, changes int) (ns, bytes float64, save int, err error) {
	p, err := newPair(s)
	if err != nil {
		return 0, 0, 0, err
	}
	defer p.close()
	id, err := create(p.a)
	if err != nil {
		return 0, 0, 0, err
	}
	if _, err := edit(p.a, id, "a", changes, 0, 1); err != nil {
		return 0, 0, 0, err
	}
	st, err := state(p.a, id)
	if err != nil {
		return 0, 0, 0, err
	}
	b0 := p.px.Bytes()
	t0 := mono()
	if err := p.connect(); err != nil {
		return 0, 0, 0, err
	}
	var w waitReply
	if err := p.b.Call(map[string]any{"op": "fetch", "doc": id, "want": map[string]int{"a": changes}, "timeout_ms": o.timeout.Milliseconds()}, &w); err != nil {
		return 0, 0, 0, err
	}
	nb := p.px.Bytes() - b0
	if !w.Done {
		return 0, 0, 0, fmt.Errorf("%s: fetch not complete within %v: %s", p.b.Name(), o.timeout, progressOf(w, map[string]int{"a": changes}))
	}
	if err := sameDoc(id, changes, p.a, p.b); err != nil {
		return 0, 0, 0, err
	}
	if err := p.throughProxy(); err != nil {
		return 0, 0, 0, err
	}
	return float64(w.At - t0), float64(nb), st.Save, nil
}

// convergeRun: a creates the document, b gets it; they are cut apart; each
// makes offline small edits; then b connects again. Returns the time from the
// connect request until both hold all of the other's edits, and the bytes
// the proxy carried meanwhile.
func convergeRun(s side, o options, offline int) (ns, bytes float64, err error) {
	p, err := newPair(s)
	if err != nil {
		return 0, 0, err
	}
	defer p.close()
	id, err := create(p.a)
	if err != nil {
		return 0, 0, err
	}
	if err := p.connect(); err != nil {
		return 0, 0, err
	}
	if err := p.b.Call(map[string]any{"op": "open", "doc": id}, nil); err != nil {
		return 0, 0, err
	}
	if err := p.b.Call(map[string]any{"op": "watch", "doc": id, "keys": []string{"a"}}, nil); err != nil {
		return 0, 0, err
	}
	if _, err := edit(p.a, id, "a", 1, 0, 1); err != nil {
		return 0, 0, err
	}
	if _, err := wait(p.b, id, map[string]int{"a": 1}, o); err != nil {
		return 0, 0, err
	}
	// Apart.
	p.px.Cut()
	for _, x := range []*proc{p.a, p.b} {
		if err := x.Call(map[string]any{"op": "disconnect"}, nil); err != nil {
			return 0, 0, err
		}
	}
	if err := p.a.Call(map[string]any{"op": "watch", "doc": id, "keys": []string{"b"}}, nil); err != nil {
		return 0, 0, err
	}
	var ea, eb error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, ea = edit(p.a, id, "a", offline, 0, 2) }()
	go func() { defer wg.Done(); _, eb = edit(p.b, id, "b", offline, 0, 3) }()
	wg.Wait()
	if err := errors.Join(ea, eb); err != nil {
		return 0, 0, err
	}
	sa, err := state(p.a, id)
	if err != nil {
		return 0, 0, err
	}
	sb, err := state(p.b, id)
	if err != nil {
		return 0, 0, err
	}
	if _, ok := sa.N["b"]; ok || fmt.Sprint(sb.N["a"]) != "0" {
		return 0, 0, fmt.Errorf("the peers were not apart: a sees b's counter %v, b sees a's %v", sa.N["b"], sb.N["a"])
	}
	// Together again.
	p.px.Restore()
	b0 := p.px.Bytes()
	t0 := mono()
	if err := p.connect(); err != nil {
		return 0, 0, err
	}
	want := offline
	var wa waitReply
	waitA := p.a.Async(map[string]any{"op": "wait", "doc": id, "want": map[string]int{"b": want}, "timeout_ms": o.timeout.Milliseconds()}, &wa)
	wb, err := wait(p.b, id, map[string]int{"a": want}, o)
	if err := errors.Join(err, waitA()); err != nil {
		return 0, 0, err
	}
	nb := p.px.Bytes() - b0
	if !wa.Done {
		return 0, 0, fmt.Errorf("%s: not converged within %v: %s", p.a.Name(), o.timeout, progressOf(wa, map[string]int{"b": want}))
	}
	if err := sameDoc(id, 1+2*offline, p.a, p.b); err != nil {
		return 0, 0, err
	}
	// Each side's offline changes crossed the link: the proxy must have
	// seen them, or the peers met past it and the figure would be 0 B.
	if s.name == "Convene" {
		if err := p.throughProxy(); err != nil {
			return 0, 0, err
		}
	}
	if nb == 0 {
		return 0, 0, fmt.Errorf("%s: converged but the proxy carried 0 B (%d connections through it): the peers reconnected past it", s.name, p.px.Open())
	}
	return float64(max(wa.At, wb.At) - t0), float64(nb), nil
}

// meshResult is the N-peer workload's figures.
type meshResult struct {
	Delivered, Expected int
	Lat                 []float64 // ns, from a change's send to its event on each other peer
	CPU                 []float64 // ns of CPU per change in the document, one per peer
}

// meshRun: n Convene peers, each connected to every other (loopback TCP,
// no proxy), open one document and each makes warm+k small edits at rate
// changes/s at the same time. Every peer records when each other peer's
// changes reached it; CPU is getrusage(RUSAGE_SELF) of each peer process
// over the edits and their delivery, divided by the changes in the document.
func meshRun(s side, o options, n, k, warm int, rate float64) (meshResult, error) {
	var res meshResult
	ps := make([]*proc, n)
	defer func() {
		var wg sync.WaitGroup
		for _, p := range ps {
			if p != nil {
				wg.Add(1)
				go func() { defer wg.Done(); p.Stop() }()
			}
		}
		wg.Wait()
	}()
	addrs := make([]string, n)
	for i := range n {
		p, err := s.start(fmt.Sprint("p", i))
		if err != nil {
			return res, err
		}
		ps[i] = p
		var l listenReply
		if err := p.Call(map[string]any{"op": "listen"}, &l); err != nil {
			return res, err
		}
		if addrs[i], err = s.dial(l.Port, l.Peer); err != nil {
			return res, err
		}
	}
	for j := range n {
		for i := range j {
			if err := ps[j].Call(map[string]any{"op": "connect", "addr": addrs[i]}, nil); err != nil {
				return res, err
			}
		}
	}
	id := newDocID()
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprint("p", i)
	}
	want := make([]map[string]int, n)
	for i, p := range ps {
		var others []string
		want[i] = map[string]int{}
		for j, key := range keys {
			if j != i {
				others = append(others, key)
				want[i][key] = warm + k
			}
		}
		if err := p.Call(map[string]any{"op": "open", "doc": id}, nil); err != nil {
			return res, err
		}
		if err := p.Call(map[string]any{"op": "watch", "doc": id, "keys": others}, nil); err != nil {
			return res, err
		}
	}
	cpu0 := make([]int64, n)
	for i, p := range ps {
		var r struct {
			CPU int64 `json:"cpu_ns"`
		}
		if err := p.Call(map[string]any{"op": "rusage"}, &r); err != nil {
			return res, err
		}
		cpu0[i] = r.CPU
	}
	edits := make([]editReply, n)
	waits := make([]waitReply, n)
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(2)
		go func() { defer wg.Done(); edits[i], errs[i] = edit(p, id, keys[i], warm+k, rate, uint32(10+i)) }()
		go func() {
			defer wg.Done()
			errs[n+i] = p.Call(map[string]any{"op": "wait", "doc": id, "want": want[i], "timeout_ms": o.timeout.Milliseconds()}, &waits[i])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	total := float64(n * (warm + k))
	for i, p := range ps {
		var r struct {
			CPU int64 `json:"cpu_ns"`
		}
		if err := p.Call(map[string]any{"op": "rusage"}, &r); err != nil {
			return res, err
		}
		res.CPU = append(res.CPU, float64(r.CPU-cpu0[i])/total)
	}
	for i := range ps {
		for j, key := range keys {
			if j == i {
				continue
			}
			seen := waits[i].Seen[key]
			for x := warm; x < warm+k; x++ {
				res.Expected++
				if x < len(seen) {
					res.Delivered++
					res.Lat = append(res.Lat, float64(seen[x]-edits[j].Sent[x]))
				}
			}
		}
	}
	if res.Delivered == res.Expected {
		if err := sameDoc(id, n*(warm+k), ps...); err != nil {
			return res, err
		}
	}
	return res, nil
}
