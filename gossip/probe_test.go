package gossip

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/convene-p2p/convene/ephemeral"

	"github.com/convene-p2p/convene/room/roomnet"
)

// probeAuthor is a fixed Ed25519 identity for the probe inputs.
func probeAuthor(t testing.TB) peer.ID {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(rand.NewChaCha8([32]byte{15}))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// probeState is a valid own snapshot of author (epoch 7, key k = v).
func probeState(t testing.TB, author peer.ID) []byte {
	t.Helper()
	s, err := ephemeral.New(ephemeral.Config{Self: ephemeral.PeerID(author), Epoch: 7})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(time.Unix(0, 0), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	return s.EncodeSnapshot()
}

// probeDelta is a delta of epoch 7 with the given raw entries.
func probeDelta(count uint64, entries ...[]byte) []byte {
	b := []byte{1, 1, 7}
	b = binary.AppendUvarint(b, count)
	for _, e := range entries {
		b = append(b, e...)
	}
	return b
}

// entry is one delta entry: head (keyLen<<2|flags), key, counter, extras.
func entry(key string, flags byte, counter uint64, extra ...byte) []byte {
	b := binary.AppendUvarint(nil, uint64(len(key))<<2|uint64(flags))
	b = append(b, key...)
	b = binary.AppendUvarint(b, counter)
	return append(b, extra...)
}

// probeEnvelopes are the 25 malformed envelopes of issue 15 (4) that the
// independent js peer sent, each otherwise a valid heartbeat (or the kind
// named) of author, so that the named defect is the only one.
func probeEnvelopes(t testing.TB, author peer.ID) map[string][]byte {
	t.Helper()
	state := probeState(t, author)
	hb := func(hdrExtra byte, fields ...[]byte) []byte {
		b := []byte{byte(roomnet.KindHeartbeat) | hdrExtra, 7}
		for _, f := range fields {
			b = append(b, f...)
		}
		return b
	}
	withState := func(st []byte) []byte { return hb(hdrState, st) }
	nameLen := func(n uint64) []byte { return hb(hdrName, binary.AppendUvarint(nil, n), []byte("abc")) }
	meta65 := binary.AppendUvarint(nil, 65)
	for i := range 65 {
		meta65 = append(meta65, 2, 'k', byte('A'+i), 0)
	}
	random := make([]byte, 200)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	version2 := bytes.Clone(state)
	version2[0] = 2
	var entries65 [][]byte
	for i := range 65 {
		entries65 = append(entries65, entry(string(rune('A'+i)), 1, uint64(i+1)))
	}
	return map[string][]byte{
		"random bytes":              random,
		"empty":                     {},
		"kind 0":                    {0x00 | hdrState, 7},
		"kind 7":                    {0x07, 7},
		"reserved bit":              {byte(roomnet.KindHeartbeat) | hdrReserved, 7},
		"11-byte varint":            {byte(roomnet.KindHeartbeat), 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
		"non-minimal varint":        {byte(roomnet.KindHeartbeat), 0x87, 0x00},
		"overflowing varint":        {byte(roomnet.KindHeartbeat), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"length 2^63":               nameLen(1 << 63),
		"length 2^62":               nameLen(1 << 62),
		"length 2^40":               nameLen(1 << 40),
		"length 10^12":              nameLen(1_000_000_000_000),
		"invalid UTF-8":             hb(hdrName, []byte{3, 'a', 0xff, 'b'}),
		"65 meta entries":           hb(hdrMeta, meta65),
		"65 delta entries":          append([]byte{byte(roomnet.KindDelta) | hdrState, 7}, probeDelta(65, entries65...)...),
		"state version 2":           withState(version2),
		"zero counter":              append([]byte{byte(roomnet.KindDelta) | hdrState, 7}, probeDelta(1, entry("k", 0, 0, 1, 'v'))...),
		"9-byte view":               {byte(roomnet.KindHello) | hdrPayload, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9},
		"non-peer-ID suspect":       append([]byte{byte(roomnet.KindSuspect) | hdrPayload, 7, 7}, "not a peer id"...),
		"tombstone with TTL":        append([]byte{byte(roomnet.KindDelta) | hdrState, 7}, probeDelta(1, entry("k", 3, 1, 0x10))...),
		"70 KB":                     append([]byte{byte(roomnet.KindBroadcast) | hdrPayload, 7}, make([]byte, 70<<10)...),
		"900 KB":                    append([]byte{byte(roomnet.KindBroadcast) | hdrPayload, 7}, make([]byte, 900<<10)...),
		"state of another peer":     withState(probeState(t, probeOther(t))),
		"zero epoch state":          append([]byte{byte(roomnet.KindDelta) | hdrState, 7}, []byte{1, 1, 0, 1, 4, 'k', 1, 1, 'v'}...),
		"trailing byte after state": append(hb(hdrState|hdrPayload, binary.AppendUvarint(nil, uint64(len(state))), state), 0),
	}
}

// probeTies are envelopes whose every part is valid on its own but whose
// tie to the presence state is not (checkPresence): before the fix the
// validator and Fetch accepted them, and a heartbeat without state, as a
// fetch reply, made its sender a member with no presence at all.
func probeTies(t testing.TB, author peer.ID) map[string][]byte {
	t.Helper()
	state := probeState(t, author) // epoch 7
	enc := func(m roomnet.Message) []byte {
		b, err := EncodeMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	delta := probeDelta(1, entry("k", 0, 1, 1, 'v'))
	empty := []byte{1, 2, 0} // a snapshot of no records
	return map[string][]byte{
		"heartbeat without state": enc(roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: 7, Name: "nobody"}),
		"hello without state":     enc(roomnet.Message{Kind: roomnet.KindHello, Epoch: 7, Name: "nobody"}),
		"delta without state":     enc(roomnet.Message{Kind: roomnet.KindDelta, Epoch: 7}),
		"zero-epoch hello":        enc(roomnet.Message{Kind: roomnet.KindHello, Epoch: 0, Name: "zero"}),
		"epoch mismatch":          enc(roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: 8, State: state}),
		"delta epoch mismatch":    enc(roomnet.Message{Kind: roomnet.KindDelta, Epoch: 6, State: delta}),
		"delta in a heartbeat":    enc(roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: 7, State: delta}),
		"snapshot in a delta":     enc(roomnet.Message{Kind: roomnet.KindDelta, Epoch: 7, State: state}),
		"empty snapshot":          enc(roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: 7, State: empty}),
		"state on a broadcast":    enc(roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 7, State: state, Payload: []byte("x")}),
		"state on a leave":        enc(roomnet.Message{Kind: roomnet.KindLeave, Epoch: 7, State: state}),
	}
}

func probeOther(t testing.TB) peer.ID {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(rand.NewChaCha8([32]byte{16}))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPublicKey(pub)
	return id
}

// Every probe input is rejected by the validator's content checks (the
// topic path and the fetch-reply path share them), and the valid
// messages they were derived from are not.
func TestProbeMalformedEnvelopesAreRejected(t *testing.T) {
	r := &Router{cfg: mustValidate(t, Config{})}
	author := probeAuthor(t)
	for _, set := range []map[string][]byte{probeEnvelopes(t, author), probeTies(t, author)} {
		for name, data := range set {
			if m, err := r.check(data, author); err == nil {
				t.Errorf("%s: accepted as %+v", name, m)
			}
		}
	}
	state := probeState(t, author)
	for _, m := range []roomnet.Message{
		{Kind: roomnet.KindHeartbeat, Epoch: 7, State: state},
		{Kind: roomnet.KindHello, Epoch: 7, Name: "ok", State: state, View: 3},
		{Kind: roomnet.KindHeartbeat, Epoch: 7, State: state, Refute: true},
		{Kind: roomnet.KindDelta, Epoch: 7, State: probeDelta(1, entry("k", 0, 1, 1, 'v'))},
		{Kind: roomnet.KindBroadcast, Epoch: 7, Payload: []byte("x")},
		{Kind: roomnet.KindLeave, Epoch: 7},
	} {
		b, err := EncodeMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.check(b, author); err != nil {
			t.Errorf("valid %v rejected: %v", m.Kind, err)
		}
	}
}

// FuzzCheck: the validator never panics, and whatever it accepts is
// canonical and obeys the presence ties (state exactly on
// hello/heartbeat/delta, with the envelope's epoch).
func FuzzCheck(f *testing.F) {
	author := probeAuthor(f)
	for _, set := range []map[string][]byte{probeEnvelopes(f, author), probeTies(f, author)} {
		for _, data := range set {
			if len(data) <= 4096 {
				f.Add(data)
			}
		}
	}
	for _, s := range envelopeSeeds() {
		f.Add(s)
	}
	r := &Router{cfg: mustValidate(f, Config{})}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := r.check(data, author)
		if err != nil {
			return
		}
		b, err := EncodeMessage(m)
		if err != nil || !bytes.Equal(b, data) {
			t.Fatalf("accepted %x is not canonical", data)
		}
		if err := checkPresence(m); err != nil {
			t.Fatalf("accepted %+v: %v", m, err)
		}
	})
}

// FuzzFetchReplyPath: a fetch reply goes through decodeFetchReply, the
// validator with the stream's peer as author, and openSigned plus the
// validator for each relayed message; none of it panics, and an accepted
// reply is a hello or heartbeat carrying its author's own state.
func FuzzFetchReplyPath(f *testing.F) {
	author := probeAuthor(f)
	for _, set := range []map[string][]byte{probeEnvelopes(f, author), probeTies(f, author)} {
		for _, data := range set {
			if len(data) > 0 && len(data) <= 4096 {
				f.Add(encodeFetchReply(fetchOK, data, nil, 4096))
				f.Add(encodeFetchReply(fetchOK, data, [][]byte{data}, 4096))
			}
		}
	}
	good, err := EncodeMessage(roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: 7, State: probeState(f, author)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encodeFetchReply(fetchOK, good, [][]byte{{0xff}, good}, 4096))
	f.Add([]byte{fetchRefused})
	f.Add([]byte{0x7f})
	r := &Router{cfg: mustValidate(f, Config{MaxMessageSize: 4096})}
	topic := TopicName("lobby")
	f.Fuzz(func(t *testing.T, data []byte) {
		st, env, relayed, err := decodeFetchReply(data, 4096)
		if err != nil || st != fetchOK {
			return
		}
		for _, b := range relayed {
			if from, d, err := openSigned(b, topic); err == nil {
				_, _ = r.check(d, from)
			}
		}
		m, err := r.check(env, author)
		if err != nil || (m.Kind != roomnet.KindHeartbeat && m.Kind != roomnet.KindHello) {
			return
		}
		if len(m.State) == 0 {
			t.Fatalf("accepted reply %+v without state", m)
		}
		if err := ephemeral.Verify(m.State, ephemeral.PeerID(author), ephemeral.Limits{}); err != nil {
			t.Fatalf("accepted reply %+v with a state that does not verify: %v", m, err)
		}
	})
}

func mustValidate(t testing.TB, cfg Config) Config {
	t.Helper()
	cfg, err := cfg.validate()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The byte examples of docs/PROTOCOL.md 2.12: the cursor update as a whole
// envelope, and a broadcast.
func TestImplementerExamples(t *testing.T) {
	delta, _ := hex.DecodeString("01" + "01" + "80d0eab6b733" + "01" + "18" + "637572736f72" + "01" + "11" + hex.EncodeToString([]byte(`{"x":100,"y":200}`)))
	for _, tc := range []struct {
		m    roomnet.Message
		want string
	}{
		{roomnet.Message{Kind: roomnet.KindDelta, Epoch: 1_767_225_600_000, State: delta},
			"2380d0eab6b733010180d0eab6b73301186375727" + "36f7201117b2278223a3130302c2279223a3230307d"},
		{roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 7, Payload: []byte("hi")}, "45076869"},
	} {
		b, err := EncodeMessage(tc.m)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(b); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.m.Kind, got, tc.want)
		}
	}
	if len(delta) != 35 {
		t.Errorf("delta is %d bytes, want 35", len(delta))
	}
}
