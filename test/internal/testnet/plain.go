package testnet

import (
	"context"
	"encoding/binary"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"google.golang.org/protobuf/proto"

	"github.com/convene-p2p/convene/ephemeral"
	"github.com/convene-p2p/convene/gossip"

	"github.com/convene-p2p/convene/room/roomnet"
)

// Plain is a plain go-libp2p-pubsub node on a room topic, not a Convene
// peer: its own GossipSub (StrictSign, flood publishing, no validator) on
// a loopback TCP host. Tests use it as a silent or hostile participant: it
// publishes whatever bytes it is given, signed with its own key, and
// captures the room's messages (with their signatures) as they arrive.
type Plain struct {
	Host  host.Host
	Key   crypto.PrivKey
	Topic *pubsub.Topic
	sub   *pubsub.Subscription
	msgs  chan *pubsub.Message
}

// NewPlain starts a plain pubsub node subscribed to room roomID, with
// extra pubsub options if any. It is closed at cleanup.
func NewPlain(t testing.TB, roomID string, opts ...pubsub.Option) *Plain {
	t.Helper()
	key := Key(t)
	h := bareHost(t, libp2p.Identity(key))
	ctx, cancel := context.WithCancel(context.Background())
	ps, err := pubsub.NewGossipSub(ctx, h, append([]pubsub.Option{
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithFloodPublish(true)}, opts...)...)
	if err != nil {
		cancel()
		t.Fatalf("pubsub: %v", err)
	}
	topic, err := ps.Join(gossip.TopicName(roomID))
	if err != nil {
		cancel()
		t.Fatalf("pubsub join: %v", err)
	}
	sub, err := topic.Subscribe(pubsub.WithBufferSize(4096))
	if err != nil {
		cancel()
		t.Fatalf("pubsub subscribe: %v", err)
	}
	p := &Plain{Host: h, Key: key, Topic: topic, sub: sub, msgs: make(chan *pubsub.Message, 4096)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := sub.Next(ctx)
			if err != nil {
				return
			}
			if m.ReceivedFrom == h.ID() {
				continue
			}
			select {
			case p.msgs <- m:
			default: // a test that does not read loses the oldest news
			}
		}
	}()
	t.Cleanup(func() {
		sub.Cancel()
		<-done
		_ = topic.Close()
		cancel()
	})
	return p
}

// ID is the plain node's peer ID.
func (p *Plain) ID() peer.ID { return p.Host.ID() }

// Publish publishes data on the room topic, signed by the plain node.
func (p *Plain) Publish(t testing.TB, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if err := p.Topic.Publish(ctx, data); err != nil {
		t.Fatalf("plain publish: %v", err)
	}
}

// WaitPeers waits until the plain node can publish to n topic peers.
func (p *Plain) WaitPeers(t testing.TB, n int) {
	t.Helper()
	Eventually(t, Wait, "plain node sees its topic peers", func() bool { return len(p.Topic.ListPeers()) >= n })
}

// Capture returns the first message received from author whose envelope
// matches, waiting up to d; the message keeps its signature, so it can be
// replayed with Inject.
func (p *Plain) Capture(t testing.TB, d time.Duration, author peer.ID, match func(roomnet.Message) bool) *pb.Message {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case m := <-p.msgs:
			if m.GetFrom() != author {
				continue
			}
			rm, err := gossip.DecodeMessage(m.GetData())
			if err == nil && match(rm) {
				return m.Message
			}
		case <-timer.C:
			t.Fatalf("no matching message from %s within %v", author, d)
			return nil
		}
	}
}

// Encode encodes a room message in the wire envelope.
func Encode(t testing.TB, m roomnet.Message) []byte {
	t.Helper()
	b, err := gossip.EncodeMessage(m)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return b
}

// State returns an ephemeral snapshot describing peer at epoch with the
// given keys (each set once, in order), as a hello or heartbeat carries.
func State(t testing.TB, p peer.ID, epoch uint64, kv ...string) []byte {
	t.Helper()
	s, err := ephemeral.New(ephemeral.Config{Self: ephemeral.PeerID(p), Epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := 0; i+1 < len(kv); i += 2 {
		if _, err := s.Set(now, kv[i], []byte(kv[i+1])); err != nil {
			t.Fatal(err)
		}
	}
	return s.EncodeSnapshot()
}

// Signed builds a pubsub message on room roomID with the given From and
// data, signed by key (which need not be From's: a forgery).
func Signed(t testing.TB, roomID string, from peer.ID, key crypto.PrivKey, data []byte) *pb.Message {
	t.Helper()
	seq := make([]byte, 8)
	binary.BigEndian.PutUint64(seq, nextSeqno())
	topic := gossip.TopicName(roomID)
	m := &pb.Message{From: []byte(from), Data: data, Seqno: seq, Topic: &topic}
	raw, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := key.Sign(append([]byte(pubsub.SignPrefix), raw...))
	if err != nil {
		t.Fatal(err)
	}
	m.Signature = sig
	pub, err := crypto.MarshalPublicKey(key.GetPublic())
	if err != nil {
		t.Fatal(err)
	}
	m.Key = pub
	return m
}

var lastSeqno atomic.Uint64

// nextSeqno is a pubsub seqno that no earlier call returned: the time in
// ns, or one more than the last one (a tight loop can outrun the clock).
func nextSeqno() uint64 {
	for {
		last := lastSeqno.Load()
		next := max(uint64(time.Now().UnixNano()), last+1)
		if lastSeqno.CompareAndSwap(last, next) {
			return next
		}
	}
}

// Injector is a bare libp2p host, running no pubsub, that writes raw
// GossipSub RPCs to peers: replays of captured signed messages, forged
// or unsigned messages, and bytes that are not RPCs at all.
type Injector struct {
	Host host.Host
	Key  crypto.PrivKey // the host's identity: messages it signs are its own
}

// NewInjector starts a bare loopback host, closed at cleanup.
func NewInjector(t testing.TB) *Injector {
	t.Helper()
	key := Key(t)
	return &Injector{Host: bareHost(t, libp2p.Identity(key)), Key: key}
}

// Listen makes the injector accept GossipSub streams (it reads and drops
// whatever arrives), so that peers' pubsub completes its side of the
// session and tracks the injector as a peer: its score, penalties and
// graylisting then apply to it as to any GossipSub node.
func (in *Injector) Listen() {
	for _, id := range pubsub.GossipSubDefaultProtocols {
		in.Host.SetStreamHandler(id, func(s network.Stream) {
			_, _ = io.Copy(io.Discard, s)
			_ = s.Reset()
		})
	}
}

// Own returns data as a pubsub message on room roomID authored and validly
// signed by the injector itself (a distinct seqno per call): what an
// admitted but hostile member publishes.
func (in *Injector) Own(t testing.TB, roomID string, data []byte) *pb.Message {
	t.Helper()
	return Signed(t, roomID, in.Host.ID(), in.Key, data)
}

// SendRPC opens a GossipSub stream to target and writes one RPC
// announcing a subscription to room roomID and carrying msgs.
func (in *Injector) SendRPC(t testing.TB, target host.Host, roomID string, msgs ...*pb.Message) {
	t.Helper()
	topic := gossip.TopicName(roomID)
	sub := true
	rpc := &pb.RPC{Subscriptions: []*pb.RPC_SubOpts{{Subscribe: &sub, Topicid: &topic}}, Publish: msgs}
	raw, err := proto.Marshal(rpc)
	if err != nil {
		t.Fatal(err)
	}
	in.SendRaw(t, target, binary.AppendUvarint(nil, uint64(len(raw))), raw)
}

// SendBatches opens one GossipSub stream to target and writes one RPC per
// batch, back to back (the first also announcing the subscription to room
// roomID): a flood as fast as the stream takes it.
func (in *Injector) SendBatches(t testing.TB, target host.Host, roomID string, batches ...[]*pb.Message) {
	t.Helper()
	topic := gossip.TopicName(roomID)
	sub := true
	var chunks [][]byte
	for i, msgs := range batches {
		rpc := &pb.RPC{Publish: msgs}
		if i == 0 {
			rpc.Subscriptions = []*pb.RPC_SubOpts{{Subscribe: &sub, Topicid: &topic}}
		}
		raw, err := proto.Marshal(rpc)
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, append(binary.AppendUvarint(nil, uint64(len(raw))), raw...))
	}
	in.SendRaw(t, target, chunks...)
}

// SendRaw opens a GossipSub stream to target and writes the given chunks
// as they are, then closes the stream.
func (in *Injector) SendRaw(t testing.TB, target host.Host, chunks ...[]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if err := in.Host.Connect(ctx, peer.AddrInfo{ID: target.ID(), Addrs: target.Addrs()}); err != nil {
		t.Fatalf("injector connect: %v", err)
	}
	s, err := in.Host.NewStream(ctx, target.ID(), pubsub.GossipSubID_v11)
	if err != nil {
		t.Fatalf("injector stream: %v", err)
	}
	for _, c := range chunks {
		if _, err := s.Write(c); err != nil {
			// The receiver may reset a stream it finds hostile: that is fine.
			_ = s.Reset()
			return
		}
	}
	_ = s.Close()
}

// bareHost starts a plain libp2p host on loopback TCP (no relay, no
// metrics), closed at cleanup.
func bareHost(t testing.TB, opts ...libp2p.Option) host.Host {
	t.Helper()
	h, err := libp2p.New(append([]libp2p.Option{
		libp2p.NoTransports,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	}, opts...)...)
	if err != nil {
		t.Fatalf("libp2p.New: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}
