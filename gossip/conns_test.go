package gossip

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/convene-p2p/convene/room/roomnet"
)

// proxy forwards one TCP connection at a time to target; Freeze makes it
// stop forwarding in both directions while keeping both sockets open (a
// frozen process: the kernel still holds the connection, nothing is read).
type proxy struct {
	ln     net.Listener
	mu     sync.Mutex
	frozen chan struct{} // closed when not frozen
	done   chan struct{} // closed at cleanup
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, frozen: make(chan struct{}), done: make(chan struct{})}
	close(p.frozen)
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		_ = ln.Close()
		close(p.done)
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		p.wg.Wait()
	})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, d)
			mu.Unlock()
			p.wg.Add(2)
			go p.pipe(c, d)
			go p.pipe(d, c)
		}
	}()
	return p
}

func (p *proxy) pipe(from, to net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate := p.frozen
			p.mu.Unlock()
			select {
			case <-gate:
			case <-p.done:
				return
			}
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				_ = to.Close()
			}
			return
		}
	}
}

// Freeze stops forwarding (for good: the test ends with it frozen).
func (p *proxy) Freeze() {
	p.mu.Lock()
	p.frozen = make(chan struct{})
	p.mu.Unlock()
}

func (p *proxy) addr(t *testing.T, id peer.ID) peer.AddrInfo {
	t.Helper()
	a, err := ma.NewMultiaddr("/ip4/127.0.0.1/tcp/" + strconv.Itoa(p.ln.Addr().(*net.TCPAddr).Port))
	if err != nil {
		t.Fatal(err)
	}
	return peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{a}}
}

func newKeyedNode(t *testing.T, key crypto.PrivKey) *node {
	t.Helper()
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.NoTransports,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	r, err := New(context.Background(), h, Config{Params: testParams()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return &node{h: h, r: r, tracer: &tracer{}}
}

func tcpAddr(t *testing.T, h host.Host) string {
	t.Helper()
	for _, a := range h.Addrs() {
		ip, err1 := a.ValueForProtocol(ma.P_IP4)
		port, err2 := a.ValueForProtocol(ma.P_TCP)
		if err1 == nil && err2 == nil {
			return ip + ":" + port
		}
	}
	t.Fatal("no TCP address")
	return ""
}

// PROTOCOL.md §2.8a: a peer restarts with the same key while its old
// process is frozen (here: its connection runs through a proxy that stops
// forwarding, both sockets open). A keeps two connections to the one peer
// ID; the old one does not answer the liveness check, so A closes both
// and dials the new process, and GossipSub works both ways again: A's
// broadcast reaches the new process and the new process's reaches A. Two
// healthy connections to one peer (the new process dialled directly while
// a proxied one is live) are left alone.
func TestRouterResetsAPeerWhoseOldConnectionIsFrozen(t *testing.T) {
	const roomID = "frozen"
	a := newNode(t, Config{})
	ta := join(t, a, roomID)
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	b1 := newKeyedNode(t, key)
	join(t, b1, roomID)
	px := newProxy(t, tcpAddr(t, b1.h))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.h.Connect(ctx, px.addr(t, b1.id())); err != nil {
		t.Fatal(err)
	}
	ta.waitPeerUp(t, 5*time.Second, b1.id())
	px.Freeze()

	b2 := newKeyedNode(t, key)
	mb2 := join(t, b2, roomID)
	connect(t, b2.h, a.h)
	if n := len(a.h.Network().ConnsToPeer(b2.id())); n < 1 {
		t.Fatalf("A has %d connections to B", n)
	}
	say := func(from *member, text string) {
		_ = from.t.Publish(context.Background(), roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, Payload: []byte(text)})
	}
	got := func(m *member, from peer.ID, text string) bool {
		for {
			select {
			case ev := <-m.events:
				if isBroadcast(from, text)(ev) {
					return true
				}
			default:
				return false
			}
		}
	}
	start := time.Now()
	eventually(t, 10*time.Second, "A's broadcast reaches the new process and its broadcast reaches A", func() bool {
		say(ta, "from A")
		say(mb2, "from B2")
		return got(mb2, a.id(), "from A") && got(ta, b2.id(), "from B2")
	})
	t.Logf("both ways after %v; A's stale connections: %d", time.Since(start).Round(time.Millisecond), a.r.Stats().StaleConns)
	if n := a.r.Stats().StaleConns; n != 1 {
		t.Errorf("StaleConns = %d, want 1", n)
	}
}
