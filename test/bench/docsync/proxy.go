package main

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// proxy is a loopback TCP forwarder between two peers that counts the bytes
// it carries both ways: the bytes on the wire (TCP payload: for Convene
// Noise-encrypted yamux frames of libp2p, for automerge-repo WebSocket
// frames of CBOR messages). Cut closes every connection and refuses new
// ones until Restore: the peers are apart.
type proxy struct {
	ln     net.Listener
	target string
	bytes  atomic.Int64

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Bytes is what the proxy carried so far, both directions.
func (p *proxy) Bytes() int64 { return p.bytes.Load() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c)
	}
}

func (p *proxy) track(c net.Conn, on bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on && p.cut {
		return false
	}
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *proxy) serve(c net.Conn) {
	defer p.wg.Done()
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	if !p.track(c, true) || !p.track(u, true) {
		_ = c.Close()
		_ = u.Close()
		return
	}
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.bytes.Add(int64(n))
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		// One side ended: end both (a half-closed libp2p or WebSocket
		// connection is of no use).
		_ = dst.Close()
		_ = src.Close()
	}
	wg.Add(2)
	go pipe(u, c)
	go pipe(c, u)
	wg.Wait()
	p.track(c, false)
	p.track(u, false)
}

// Cut closes every connection through the proxy and refuses new ones.
func (p *proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
}

// Restore accepts connections again.
func (p *proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Open is how many connections (each a pair of sockets) pass through now.
func (p *proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}

func (p *proxy) Close() error {
	err := p.ln.Close()
	p.Cut()
	p.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
