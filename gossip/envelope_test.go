package gossip

import (
	"bytes"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/convene-p2p/convene/room/roomnet"
)

func sameMessage(a, b roomnet.Message) bool {
	return a.Kind == b.Kind && a.Epoch == b.Epoch && a.Name == b.Name &&
		maps.Equal(a.Meta, b.Meta) && bytes.Equal(a.State, b.State) && bytes.Equal(a.Payload, b.Payload) &&
		a.Subject == b.Subject && a.SubjectEpoch == b.SubjectEpoch && a.View == b.View && a.Refute == b.Refute
}

func TestEnvelopeRoundTrip(t *testing.T) {
	const unixMs = 1_767_225_600_000 // a realistic epoch (unix ms)
	tests := []struct {
		name string
		m    roomnet.Message
		size int // expected encoded size, or 0 to skip
	}{
		{"leave epoch 0", roomnet.Message{Kind: roomnet.KindLeave}, 2},
		{"leave", roomnet.Message{Kind: roomnet.KindLeave, Epoch: unixMs}, 7},
		{"delta", roomnet.Message{Kind: roomnet.KindDelta, Epoch: unixMs, State: []byte("0123456789")}, 1 + 6 + 10},
		{"broadcast", roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 7, Payload: []byte("hello")}, 1 + 1 + 5},
		{"suspect", roomnet.Message{Kind: roomnet.KindSuspect, Epoch: 7, Subject: "peer-id-bytes", SubjectEpoch: unixMs}, 1 + 1 + 6 + 13},
		{"hello with view", roomnet.Message{Kind: roomnet.KindHello, Epoch: 7, View: 0x0102030405060708}, 1 + 1 + 8},
		{"hello full", roomnet.Message{
			Kind: roomnet.KindHello, Epoch: unixMs, Name: "Ada",
			Meta:  map[string]string{"color": "red", "avatar": "", "z": "last"},
			State: []byte{1, 2, 3},
		}, 0},
		{"heartbeat no state", roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: 1, Name: "Bob"}, 0},
		{"refutation", roomnet.Message{Kind: roomnet.KindHeartbeat, Epoch: 7, State: []byte{1, 2}, Refute: true}, 1 + 1 + 1 + 2 + 1},
		{"state and payload", roomnet.Message{Kind: roomnet.KindBroadcast, Epoch: 1, State: []byte{9}, Payload: []byte{8, 7}}, 1 + 1 + 1 + 1 + 2},
		{"max epoch", roomnet.Message{Kind: roomnet.KindDelta, Epoch: ^uint64(0), State: []byte{0}}, 1 + 10 + 1},
		{"limits", roomnet.Message{
			Kind: roomnet.KindHello, Epoch: 1, Name: strings.Repeat("n", MaxNameLen),
			Meta: func() map[string]string {
				m := map[string]string{}
				for i := range MaxMetaEntries {
					m[strings.Repeat(string(rune('a'+i%26)), 1+i%MaxMetaKeyLen)+string(rune('A'+i))] = strings.Repeat("v", MaxMetaValueLen)
				}
				return m
			}(),
		}, 0},
		{"utf8", roomnet.Message{Kind: roomnet.KindHello, Epoch: 3, Name: "Zoë 😀", Meta: map[string]string{"ключ": "значение"}}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := EncodeMessage(tc.m)
			if err != nil {
				t.Fatalf("EncodeMessage: %v", err)
			}
			if tc.size != 0 && len(b) != tc.size {
				t.Errorf("encoded size %d, want %d", len(b), tc.size)
			}
			got, err := DecodeMessage(b)
			if err != nil {
				t.Fatalf("DecodeMessage: %v", err)
			}
			if !sameMessage(got, tc.m) {
				t.Fatalf("round trip: got %+v, want %+v", got, tc.m)
			}
			// Canonical: re-encoding gives the same bytes.
			b2, err := EncodeMessage(got)
			if err != nil || !bytes.Equal(b, b2) {
				t.Fatalf("re-encode: %x, %v; want %x", b2, err, b)
			}
			// The decoded message does not alias the input.
			if len(b) > 0 {
				for i := range b {
					b[i] ^= 0xff
				}
				if !sameMessage(got, tc.m) {
					t.Fatalf("decoded message aliases its input")
				}
			}
		})
	}
}

// The hot path: a delta's envelope costs one header byte plus the epoch.
func TestEnvelopeDeltaOverhead(t *testing.T) {
	state := make([]byte, 40)
	b, err := EncodeMessage(roomnet.Message{Kind: roomnet.KindDelta, Epoch: 1_767_225_600_000, State: state})
	if err != nil {
		t.Fatal(err)
	}
	if overhead := len(b) - len(state); overhead != 7 {
		t.Fatalf("delta overhead %d bytes, want 7 (header + 6-byte epoch)", overhead)
	}
}

func TestEncodeMessageRejects(t *testing.T) {
	tests := []struct {
		name string
		m    roomnet.Message
		want error
	}{
		{"kind 0", roomnet.Message{}, ErrMalformed},
		{"unknown kind", roomnet.Message{Kind: 7}, ErrMalformed},
		{"suspect without subject", roomnet.Message{Kind: roomnet.KindSuspect, SubjectEpoch: 1}, ErrMalformed},
		{"suspect with payload", roomnet.Message{Kind: roomnet.KindSuspect, Subject: "p", Payload: []byte("x")}, ErrMalformed},
		{"suspect with state", roomnet.Message{Kind: roomnet.KindSuspect, Subject: "p", State: []byte("x")}, ErrMalformed},
		{"suspect subject too long", roomnet.Message{Kind: roomnet.KindSuspect, Subject: roomnet.PeerID(strings.Repeat("p", MaxSubjectLen+1))}, ErrTooLarge},
		{"subject on a heartbeat", roomnet.Message{Kind: roomnet.KindHeartbeat, Subject: "p"}, ErrMalformed},
		{"view on a heartbeat", roomnet.Message{Kind: roomnet.KindHeartbeat, View: 1}, ErrMalformed},
		{"hello with payload", roomnet.Message{Kind: roomnet.KindHello, Payload: []byte("x")}, ErrMalformed},
		{"heartbeat with payload", roomnet.Message{Kind: roomnet.KindHeartbeat, Payload: []byte{1}}, ErrMalformed},
		{"refutation mark on a delta", roomnet.Message{Kind: roomnet.KindDelta, State: []byte{1}, Refute: true}, ErrMalformed},
		{"refutation mark on a hello", roomnet.Message{Kind: roomnet.KindHello, Refute: true}, ErrMalformed},
		{"long name", roomnet.Message{Kind: roomnet.KindHello, Name: strings.Repeat("x", MaxNameLen+1)}, ErrTooLarge},
		{"bad utf8 name", roomnet.Message{Kind: roomnet.KindHello, Name: "\xff"}, ErrMalformed},
		{"empty meta key", roomnet.Message{Kind: roomnet.KindHello, Meta: map[string]string{"": "v"}}, ErrMalformed},
		{"long meta key", roomnet.Message{Kind: roomnet.KindHello, Meta: map[string]string{strings.Repeat("k", MaxMetaKeyLen+1): ""}}, ErrTooLarge},
		{"long meta value", roomnet.Message{Kind: roomnet.KindHello, Meta: map[string]string{"k": strings.Repeat("v", MaxMetaValueLen+1)}}, ErrTooLarge},
		{"bad utf8 meta", roomnet.Message{Kind: roomnet.KindHello, Meta: map[string]string{"k": "\xc3"}}, ErrMalformed},
		{"too many meta", roomnet.Message{Kind: roomnet.KindHello, Meta: func() map[string]string {
			m := map[string]string{}
			for i := range MaxMetaEntries + 1 {
				m[string(rune('A'+i))] = ""
			}
			return m
		}()}, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := EncodeMessage(tc.m); !errors.Is(err, tc.want) {
				t.Fatalf("EncodeMessage error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDecodeMessageRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"kind 0", []byte{0x00, 0x01}, ErrMalformed},
		{"suspect without payload", []byte{0x06, 0x01}, ErrMalformed},
		{"hello view of 7 bytes", []byte{0x41, 0x01, 1, 2, 3, 4, 5, 6, 7}, ErrMalformed},
		{"hello view of 9 bytes", []byte{0x41, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9}, ErrMalformed},
		{"hello zero view", []byte{0x41, 0x01, 0, 0, 0, 0, 0, 0, 0, 0}, ErrMalformed},
		{"heartbeat payload 0x02", []byte{0x42, 0x01, 0x02}, ErrMalformed},
		{"heartbeat payload of 2 bytes", []byte{0x42, 0x01, 0x01, 0x01}, ErrMalformed},
		{"suspect without subject", []byte{0x46, 0x01, 0x01}, ErrMalformed},
		{"suspect bad subject epoch", []byte{0x46, 0x01, 0x80}, ErrMalformed},
		{"suspect with state", []byte{0x66, 0x01, 0x01, 0x01, 0x01, 'p'}, ErrMalformed},
		{"suspect subject too long", append([]byte{0x46, 0x01, 0x01}, make([]byte, MaxSubjectLen+1)...), ErrTooLarge},
		{"kind 7", []byte{0x07, 0x01}, ErrMalformed},
		{"reserved bit", []byte{0x84, 0x01}, ErrMalformed},
		{"no epoch", []byte{0x04}, ErrMalformed},
		{"truncated epoch", []byte{0x04, 0x80}, ErrMalformed},
		{"non-minimal epoch", []byte{0x04, 0x81, 0x00}, ErrMalformed},
		{"overflowing epoch", []byte{0x04, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, ErrMalformed},
		{"11-byte epoch", []byte{0x04, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, ErrMalformed},
		{"trailing", []byte{0x04, 0x01, 0x00}, ErrMalformed},
		{"name truncated", []byte{0x0c, 0x01, 0x05, 'a'}, ErrMalformed},
		{"name empty", []byte{0x0c, 0x01, 0x00}, ErrMalformed},
		{"name too long", append([]byte{0x0c, 0x01, 0x81, 0x02}, make([]byte, 257)...), ErrTooLarge},
		{"name bad utf8", []byte{0x0c, 0x01, 0x01, 0xff}, ErrMalformed},
		{"meta count 0", []byte{0x14, 0x01, 0x00}, ErrMalformed},
		{"meta count huge", []byte{0x14, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f}, ErrTooLarge},
		{"meta truncated", []byte{0x14, 0x01, 0x02, 0x01, 'a', 0x00}, ErrMalformed},
		{"meta empty key", []byte{0x14, 0x01, 0x01, 0x00, 0x00, 0x00}, ErrMalformed},
		{"meta unsorted", []byte{0x14, 0x01, 0x02, 0x01, 'b', 0x00, 0x01, 'a', 0x00}, ErrMalformed},
		{"meta duplicate", []byte{0x14, 0x01, 0x02, 0x01, 'a', 0x00, 0x01, 'a', 0x00}, ErrMalformed},
		{"meta value too long", append([]byte{0x14, 0x01, 0x01, 0x01, 'a', 0x81, 0x08}, make([]byte, 1025)...), ErrTooLarge},
		{"state flag, no state", []byte{0x23, 0x01}, ErrMalformed},
		{"payload flag, no payload", []byte{0x45, 0x01}, ErrMalformed},
		{"state length 0 before payload", []byte{0x65, 0x01, 0x00, 0x01}, ErrMalformed},
		{"state length beyond input", []byte{0x65, 0x01, 0x05, 0x01}, ErrMalformed},
		{"state but empty payload", []byte{0x65, 0x01, 0x01, 0x01}, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if m, err := DecodeMessage(tc.in); !errors.Is(err, tc.want) {
				t.Fatalf("DecodeMessage(%x) = %+v, %v; want error %v", tc.in, m, err, tc.want)
			}
		})
	}
}

func TestFetchFramingRoundTrip(t *testing.T) {
	id, err := decodeFetchRequest(encodeFetchRequest("lobby"))
	if err != nil || id != "lobby" {
		t.Fatalf("request round trip: %q, %v", id, err)
	}
	for _, bad := range [][]byte{nil, {0x00}, {0x05, 'a'}, {0x01, '/'}, {0x01, 0x07}, {0x01, 'a', 'b'}, {0x81, 0x01}} {
		if _, err := decodeFetchRequest(bad); err == nil {
			t.Errorf("decodeFetchRequest(%x) accepted", bad)
		}
	}
	env := []byte{0x02, 0x01}
	relayed := [][]byte{{0xaa}, make([]byte, 64+relayOverhead+1), {0xbb, 0xcc}}
	st, got, rel, err := decodeFetchReply(encodeFetchReply(fetchOK, env, relayed, 64), 64)
	if err != nil || st != fetchOK || !bytes.Equal(got, env) {
		t.Fatalf("reply round trip: %d %x %v", st, got, err)
	}
	// The oversized relayed message is skipped by the encoder.
	if len(rel) != 2 || !bytes.Equal(rel[0], relayed[0]) || !bytes.Equal(rel[1], relayed[2]) {
		t.Fatalf("relayed round trip: %x", rel)
	}
	for _, s := range []byte{fetchNotInRoom, fetchRefused, fetchBusy} {
		if st, _, _, err := decodeFetchReply(encodeFetchReply(s, nil, nil, 0), 64); err != nil || st != s {
			t.Errorf("status %d round trip: %d %v", s, st, err)
		}
	}
	for _, bad := range [][]byte{nil, {0x09}, {0x00}, {0x00, 0x00}, {0x00, 0x02, 0x01}, {0x00, 0x01, 0x01, 0x01}, {0x01, 0x00}, {0x00, 0x41},
		{0x00, 0x01, 0x01},                   // no relayed count
		{0x00, 0x01, 0x01, 0x01},             // count 1, nothing follows
		{0x00, 0x01, 0x01, 0x01, 0x00},       // empty relayed message
		{0x00, 0x01, 0x01, 0x01, 0x02, 0xaa}, // truncated relayed message
		{0x00, 0x01, 0x01, 0x00, 0x00},       // trailing byte
	} {
		if _, _, _, err := decodeFetchReply(bad, 64); err == nil {
			t.Errorf("decodeFetchReply(%x) accepted", bad)
		}
	}
	if _, _, _, err := decodeFetchReply(encodeFetchReply(fetchOK, make([]byte, 65), nil, 65), 64); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized reply: %v, want ErrTooLarge", err)
	}
	// The relayed part is bounded by MaxRelayBytes, whole messages only.
	many := make([][]byte, 0, 100)
	for range 100 {
		many = append(many, make([]byte, 60<<10))
	}
	_, _, rel, err = decodeFetchReply(encodeFetchReply(fetchOK, env, many, 64<<10), 64<<10)
	if err != nil || len(rel) != MaxRelayBytes/(60<<10+3) {
		t.Errorf("bounded relay: %d messages, %v", len(rel), err)
	}
}

func envelopeSeeds() [][]byte {
	var seeds [][]byte
	for _, m := range []roomnet.Message{
		{Kind: roomnet.KindHello, Epoch: 1_767_225_600_000, Name: "Ada", Meta: map[string]string{"a": "1", "b": ""}, State: []byte{1, 2, 3}},
		{Kind: roomnet.KindHeartbeat, Epoch: 2, State: []byte{4}},
		{Kind: roomnet.KindDelta, Epoch: 3, State: []byte("delta")},
		{Kind: roomnet.KindLeave, Epoch: 4},
		{Kind: roomnet.KindBroadcast, Epoch: 5, State: []byte{1}, Payload: []byte("chat")},
		{Kind: roomnet.KindSuspect, Epoch: 6, Subject: "peer", SubjectEpoch: 1_767_225_600_000},
		{Kind: roomnet.KindHello, Epoch: 7, Name: "Ada", State: []byte{1}, View: 0xfeedface},
		{Kind: roomnet.KindHeartbeat, Epoch: 8, Name: "Ada", State: []byte{1}, Refute: true},
	} {
		b, err := EncodeMessage(m)
		if err != nil {
			panic(err)
		}
		seeds = append(seeds, b)
	}
	return append(seeds, nil, []byte{0x84, 0x01}, []byte{0x14, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f})
}

// FuzzDecodeMessage: decoding never panics, and whatever decodes re-encodes
// to the same bytes (the encoding is canonical).
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range envelopeSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeMessage(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		b, err := EncodeMessage(m)
		if err != nil {
			t.Fatalf("decoded %+v does not re-encode: %v", m, err)
		}
		if !bytes.Equal(b, data) {
			t.Fatalf("not canonical: %x re-encodes to %x", data, b)
		}
	})
}

func FuzzDecodeFetchRequest(f *testing.F) {
	f.Add(encodeFetchRequest("lobby"))
	f.Add(encodeFetchRequest(strings.Repeat("r", MaxRoomIDLen)))
	f.Add([]byte{0x81, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := decodeFetchRequest(data)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeFetchRequest(id), data) {
			t.Fatalf("not canonical: %x", data)
		}
	})
}

func FuzzDecodeFetchReply(f *testing.F) {
	for _, s := range envelopeSeeds() {
		f.Add(encodeFetchReply(fetchOK, s, nil, 1024))
		f.Add(encodeFetchReply(fetchOK, s, [][]byte{s, {1, 2, 3}}, 1024))
	}
	f.Add([]byte{fetchNotInRoom})
	f.Add([]byte{fetchBusy, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		st, env, rel, err := decodeFetchReply(data, 1024)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeFetchReply(st, env, rel, 1024), data) {
			t.Fatalf("not canonical: %x", data)
		}
	})
}

func TestCheckRoomID(t *testing.T) {
	for _, ok := range []string{"lobby", "a", strings.Repeat("x", MaxRoomIDLen), "chat general", "café", "doc:42"} {
		if err := checkRoomID(ok); err != nil {
			t.Errorf("checkRoomID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("x", MaxRoomIDLen+1), "a/b", "tab\there", "nul\x00", "\xff", "del\x7f", "c1\u0085"} {
		if err := checkRoomID(bad); !errors.Is(err, ErrInvalidRoomID) {
			t.Errorf("checkRoomID(%q) = %v, want ErrInvalidRoomID", bad, err)
		}
	}
}
