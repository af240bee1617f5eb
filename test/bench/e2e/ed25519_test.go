package main

// The cost of Ed25519 on this machine, for the hub comparison's CPU
// analysis (docs/BENCHMARKS.md §6): every pubsub message Convene sends is
// signed once by its author and its signature verified once per receiving
// host (more when copies race, see hubprof.go). Run with
//
//	go test ./test/bench/e2e -run '^$' -bench 'Ed25519|PubsubMessage' -benchtime 2s

import (
	stded "crypto/ed25519"
	"crypto/rand"
	"testing"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/convene-p2p/convene/gossip"
)

// signedCursor is a pubsub message of the size a Convene cursor delta has
// on the wire (data 44 B: §3's byte profile), signed as pubsub signs under
// StrictSign: Ed25519 over "libp2p-pubsub:" and the message without
// signature and key (the key is inline in an Ed25519 peer ID).
type signedCursor struct {
	priv     crypto.PrivKey
	pub      crypto.PubKey
	from     peer.ID
	msg      *pb.Message
	unsigned []byte // what was signed, prefix included
}

func newSignedCursor(tb testing.TB) signedCursor {
	tb.Helper()
	priv, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	from, err := peer.IDFromPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	m := &pb.Message{
		From:  []byte(from),
		Data:  make([]byte, 44),
		Seqno: []byte{0x18, 0x7e, 0x4a, 0x02, 0x11, 0x90, 0x00, 0x01},
		Topic: proto.String(gossip.TopicName("bench")),
	}
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	unsigned := append([]byte(pubsub.SignPrefix), b...)
	if m.Signature, err = priv.Sign(unsigned); err != nil {
		tb.Fatal(err)
	}
	return signedCursor{priv: priv, pub: pub, from: from, msg: m, unsigned: unsigned}
}

// verifyAsPubsub does what pubsub's verifyMessageSignature does for one
// received message: the key from the author's ID, the message marshalled
// again without signature and key, the signature checked.
func verifyAsPubsub(m *pb.Message) bool {
	from, err := peer.IDFromBytes(m.From)
	if err != nil {
		return false
	}
	pk, err := from.ExtractPublicKey()
	if err != nil {
		return false
	}
	xm := pb.Message{From: m.From, Data: m.Data, Seqno: m.Seqno, Topic: m.Topic}
	b, err := proto.Marshal(&xm)
	if err != nil {
		return false
	}
	ok, err := pk.Verify(append([]byte(pubsub.SignPrefix), b...), m.Signature)
	return err == nil && ok
}

// TestVerifyAsPubsub checks that the benchmarked path verifies: a good
// message passes, one with a changed byte of data does not.
func TestVerifyAsPubsub(t *testing.T) {
	s := newSignedCursor(t)
	if !verifyAsPubsub(s.msg) {
		t.Fatal("a correctly signed message does not verify")
	}
	bad := proto.Clone(s.msg).(*pb.Message)
	bad.Data[7] ^= 1
	if verifyAsPubsub(bad) {
		t.Fatal("a message with changed data verifies")
	}
}

func BenchmarkEd25519Sign(b *testing.B) {
	s := newSignedCursor(b)
	raw, err := s.priv.Raw()
	if err != nil {
		b.Fatal(err)
	}
	key := stded.PrivateKey(raw)
	for b.Loop() {
		stded.Sign(key, s.unsigned)
	}
}

func BenchmarkEd25519Verify(b *testing.B) {
	s := newSignedCursor(b)
	raw, err := s.pub.Raw()
	if err != nil {
		b.Fatal(err)
	}
	key := stded.PublicKey(raw)
	for b.Loop() {
		if !stded.Verify(key, s.unsigned, s.msg.Signature) {
			b.Fatal("does not verify")
		}
	}
}

func BenchmarkLibp2pEd25519Sign(b *testing.B) {
	s := newSignedCursor(b)
	for b.Loop() {
		if _, err := s.priv.Sign(s.unsigned); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLibp2pEd25519Verify(b *testing.B) {
	s := newSignedCursor(b)
	for b.Loop() {
		if ok, err := s.pub.Verify(s.unsigned, s.msg.Signature); err != nil || !ok {
			b.Fatal("does not verify")
		}
	}
}

// BenchmarkPubsubMessageVerify is the whole per-message signature check of
// pubsub (key extraction, marshalling, verification).
func BenchmarkPubsubMessageVerify(b *testing.B) {
	s := newSignedCursor(b)
	for b.Loop() {
		if !verifyAsPubsub(s.msg) {
			b.Fatal("does not verify")
		}
	}
}
