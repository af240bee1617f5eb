package main

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// bwCounter is a metrics.Reporter for libp2p.BandwidthReporter: the swarm
// calls it for every read and write on a stream, with the stream's protocol.
// Unlike metrics.BandwidthCounter it keeps exact totals that can be read at
// any instant (BandwidthCounter's totals are updated by a once-a-second
// sweeper, and that sweeper goroutine never exits, which goleak rejects).
// Bytes are counted at the stream layer: payload written by the protocol,
// without yamux frame headers, TLS records or TCP/IP headers.
type bwCounter struct {
	totalIn, totalOut atomic.Int64
	mu                sync.Mutex
	in, out           map[protocol.ID]*atomic.Int64
}

var _ metrics.Reporter = (*bwCounter)(nil)

func newBWCounter() *bwCounter {
	return &bwCounter{in: make(map[protocol.ID]*atomic.Int64), out: make(map[protocol.ID]*atomic.Int64)}
}

func (b *bwCounter) counter(m map[protocol.ID]*atomic.Int64, p protocol.ID) *atomic.Int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := m[p]
	if c == nil {
		c = new(atomic.Int64)
		m[p] = c
	}
	return c
}

func (b *bwCounter) LogSentMessage(n int64) { b.totalOut.Add(n) }
func (b *bwCounter) LogRecvMessage(n int64) { b.totalIn.Add(n) }
func (b *bwCounter) LogSentMessageStream(n int64, p protocol.ID, _ peer.ID) {
	b.counter(b.out, p).Add(n)
}
func (b *bwCounter) LogRecvMessageStream(n int64, p protocol.ID, _ peer.ID) {
	b.counter(b.in, p).Add(n)
}
func (b *bwCounter) GetBandwidthForPeer(peer.ID) metrics.Stats { return metrics.Stats{} }
func (b *bwCounter) GetBandwidthForProtocol(p protocol.ID) metrics.Stats {
	return metrics.Stats{TotalIn: b.counter(b.in, p).Load(), TotalOut: b.counter(b.out, p).Load()}
}
func (b *bwCounter) GetBandwidthTotals() metrics.Stats {
	return metrics.Stats{TotalIn: b.totalIn.Load(), TotalOut: b.totalOut.Load()}
}
func (b *bwCounter) GetBandwidthByPeer() map[peer.ID]metrics.Stats {
	return map[peer.ID]metrics.Stats{}
}
func (b *bwCounter) GetBandwidthByProtocol() map[protocol.ID]metrics.Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[protocol.ID]metrics.Stats, len(b.out))
	for p, c := range b.out {
		s := out[p]
		s.TotalOut = c.Load()
		out[p] = s
	}
	for p, c := range b.in {
		s := out[p]
		s.TotalIn = c.Load()
		out[p] = s
	}
	return out
}
func (b *bwCounter) Reset()             {}
func (b *bwCounter) TrimIdle(time.Time) {}

// sentBytes splits the bytes this host sent into the raw GossipSub baseline
// (the harness's own protocol ID), Convene (GossipSub's standard protocol IDs
// used by gossip.Router, and Convene's own /convene/... protocols such as
// Fetch) and everything else (identify, ping, ...).
func (b *bwCounter) sentBytes() (raw, convene, other int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for p, c := range b.out {
		n := c.Load()
		switch {
		case p == rawProto:
			raw += n
		case strings.HasPrefix(string(p), "/convene/"), strings.HasPrefix(string(p), "/meshsub/"), strings.HasPrefix(string(p), "/floodsub/"):
			convene += n
		default:
			other += n
		}
	}
	return raw, convene, other
}
