package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strconv"
	"time"

	"github.com/convene-p2p/convene/ephemeral"
)

// The workload, the same as bench.mjs: one peer's state {cursor:{x,y}, name:"alice"}, kept as
// two keys; the user moves the cursor.
const (
	keyCursor = "cursor"
	keyName   = "name"
	fixedX    = 1280 // the cursor of the bytes measurement: the middle of a 2560x1440 screen
	fixedY    = 720
	hourAt60  = 60 * 60 * 60 // writes in one hour of cursor moves at 60 Hz
)

var nameValue = []byte(`"alice"`)

// The i-th distinct cursor position of a stream (the same sequence as bench.mjs).
func cursorX(i int) int { return i % 2048 }
func cursorY(i int) int { return i / 2048 }

// appendCursor appends the JSON {"x":x,"y":y} to b.
func appendCursor(b []byte, x, y int) []byte {
	b = append(b, `{"x":`...)
	b = strconv.AppendInt(b, int64(x), 10)
	b = append(b, `,"y":`...)
	b = strconv.AppendInt(b, int64(y), 10)
	return append(b, '}')
}

// cursorValue returns the i-th cursor of a stream as a new slice (as an application would
// produce a new JSON value for each move).
func cursorValue(i int) []byte {
	return appendCursor(make([]byte, 0, 24), cursorX(i), cursorY(i))
}

// peerID returns the raw bytes of a libp2p Ed25519 peer ID (identity multihash of the protobuf
// public key: 0x00 0x24 0x08 0x01 0x12 0x20 + 32 key bytes), deterministic in i.
func peerID(i int) ephemeral.PeerID {
	key := sha256.Sum256([]byte("convene-bench-compare-peer-" + strconv.Itoa(i)))
	return ephemeral.PeerID(append([]byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}, key[:]...))
}

// conveneResult holds Convene's figures. The JSON names follow bench.mjs.
type conveneResult struct {
	Epoch             uint64                `json:"epoch"`          // the local peer's epoch
	Bytes             int                   `json:"bytes"`          // EncodeDelta after one cursor move
	BytesAfterHour    int                   `json:"bytesAfterHour"` // the same after an hour of moves at 60 Hz
	SetEncode         sample                `json:"setEncode"`
	Apply             applySample           `json:"apply"`
	SnapshotPerAuthor map[string]snapSample `json:"snapshotPerAuthor"`
	SnapshotTrusted   map[string]snapSample `json:"snapshotTrusted"`
}

// newStore makes a store for peer with room for peers remote peers.
func newStore(self ephemeral.PeerID, epoch uint64, peers int) (*ephemeral.Store, error) {
	cfg := ephemeral.Config{Self: self, Epoch: epoch}
	if peers+2 > 1024 { // the default MaxPeers (self included)
		cfg.Limits.MaxPeers = peers + 2
	}
	return ephemeral.New(cfg)
}

// cursorMoveDelta returns the delta one cursor move produces: the state {name, cursor} exists and
// was sent, then the cursor moves to (fixedX, fixedY). Before that move the store has made
// extraMoves further moves (to show how the delta grows with the author's counter).
func cursorMoveDelta(epoch uint64, extraMoves int) ([]byte, error) {
	now := time.Now()
	s, err := newStore(peerID(0), epoch, 0)
	if err != nil {
		return nil, err
	}
	if _, err := s.Set(now, keyName, nameValue); err != nil {
		return nil, err
	}
	if _, err := s.Set(now, keyCursor, appendCursor(nil, 0, 0)); err != nil {
		return nil, err
	}
	s.EncodeDelta()
	for i := range extraMoves {
		if _, err := s.Set(now, keyCursor, cursorValue(i)); err != nil {
			return nil, err
		}
	}
	s.EncodeDelta()
	if _, err := s.Set(now, keyCursor, appendCursor(nil, fixedX, fixedY)); err != nil {
		return nil, err
	}
	d := s.EncodeDelta()
	return d, checkf(len(d) > 0, "Convene EncodeDelta after a cursor move is empty")
}

// runConvene measures Convene's ephemeral.Store in this process.
func runConvene(st settings, epoch uint64, sizes []int) (*conveneResult, error) {
	res := &conveneResult{
		Epoch:             epoch,
		SnapshotPerAuthor: map[string]snapSample{},
		SnapshotTrusted:   map[string]snapSample{},
	}
	d, err := cursorMoveDelta(epoch, 0)
	if err != nil {
		return nil, err
	}
	res.Bytes = len(d)
	if d, err = cursorMoveDelta(epoch, hourAt60); err != nil {
		return nil, err
	}
	res.BytesAfterHour = len(d)

	if res.SetEncode, err = conveneSetEncode(st, epoch); err != nil {
		return nil, err
	}
	if res.Apply, err = conveneApply(st, epoch); err != nil {
		return nil, err
	}
	for _, n := range sizes {
		pa, tr, err := conveneSnapshot(st, epoch, n)
		if err != nil {
			return nil, err
		}
		res.SnapshotPerAuthor[strconv.Itoa(n)] = pa
		res.SnapshotTrusted[strconv.Itoa(n)] = tr
	}
	return res, nil
}

// conveneSetEncode: Set("cursor", a fresh value) + EncodeDelta, reading the clock per write as
// the room shell does (Loro and Yjs read Date.now() inside set).
func conveneSetEncode(st settings, epoch uint64) (sample, error) {
	self := peerID(0)
	s, err := newStore(self, epoch, 0)
	if err != nil {
		return sample{}, err
	}
	if _, err := s.Set(time.Now(), keyName, nameValue); err != nil {
		return sample{}, err
	}
	s.EncodeDelta()
	i, sink := 0, 0
	return st.measure(16, func(n int) (time.Duration, error) {
		start := time.Now()
		for range n {
			if _, err := s.Set(time.Now(), keyCursor, cursorValue(i)); err != nil {
				return 0, err
			}
			sink += len(s.EncodeDelta())
			i++
		}
		el := time.Since(start)
		v, ok := s.Get(self, keyCursor)
		return el, checkf(ok && bytes.Equal(v, cursorValue(i-1)) && sink > 0,
			"Convene set+encode: final value %q, want %q", v, cursorValue(i-1))
	})
}

// conveneStream returns n deltas from one sender, one per cursor move.
func conveneStream(sender ephemeral.PeerID, epoch uint64, n int) ([][]byte, error) {
	s, err := newStore(sender, epoch, 0)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, n)
	now := time.Now()
	for i := range n {
		if _, err := s.Set(now, keyCursor, cursorValue(i)); err != nil {
			return nil, err
		}
		if out[i] = s.EncodeDelta(); len(out[i]) == 0 {
			return nil, fmt.Errorf("compare: empty delta after a Set")
		}
	}
	return out, nil
}

// conveneApply: a fresh receiver Applies a stream of distinct deltas from one author.
func conveneApply(st settings, epoch uint64) (applySample, error) {
	sender, self := peerID(1), peerID(0)
	var stream [][]byte
	var last verified
	s, err := st.measure(16, func(n int) (time.Duration, error) {
		if len(stream) < n {
			var err error
			if stream, err = conveneStream(sender, epoch, n); err != nil {
				return 0, err
			}
		}
		rx, err := newStore(self, epoch, 1)
		if err != nil {
			return 0, err
		}
		applied := 0
		start := time.Now()
		for k := range n {
			chs, err := rx.Apply(time.Now(), sender, stream[k])
			if err != nil {
				return 0, err
			}
			for _, c := range chs {
				applied += len(c.Added) + len(c.Updated)
			}
		}
		el := time.Since(start)
		last = verified{Sent: n, Applied: applied}
		v, ok := rx.Get(sender, keyCursor)
		if err := checkf(ok && bytes.Equal(v, cursorValue(n-1)), "Convene apply: final value %q, want %q", v, cursorValue(n-1)); err != nil {
			return 0, err
		}
		return el, checkf(applied == n, "Convene apply: %d of %d updates applied", applied, n)
	})
	return applySample{sample: s, Verified: last}, err
}

// snapshotInputs builds the state of n peers, each {name, cursor} in its own store: singles[p]
// is peer p's own snapshot (what it sends a joiner), multi one snapshot of all n from a hub that
// Applied every single.
func snapshotInputs(epoch uint64, n int) (ids []ephemeral.PeerID, singles [][]byte, multi []byte, err error) {
	ids = make([]ephemeral.PeerID, n)
	singles = make([][]byte, n)
	now := time.Now()
	hub, err := newStore(peerID(-1), epoch, n)
	if err != nil {
		return nil, nil, nil, err
	}
	for p := range n {
		ids[p] = peerID(p + 1)
		s, err := newStore(ids[p], epoch+uint64(p), 0)
		if err != nil {
			return nil, nil, nil, err
		}
		if _, err := s.Set(now, keyName, nameValue); err != nil {
			return nil, nil, nil, err
		}
		if _, err := s.Set(now, keyCursor, appendCursor(nil, cursorX(p), cursorY(p)+1)); err != nil {
			return nil, nil, nil, err
		}
		singles[p] = s.EncodeSnapshot()
		if _, err := hub.Apply(now, ids[p], singles[p]); err != nil {
			return nil, nil, nil, err
		}
	}
	return ids, singles, hub.EncodeSnapshot(ids...), nil
}

// conveneSnapshot measures applying the state of n peers into a fresh store, in two ways:
// perAuthor = n single-peer snapshots, each Applied with its author (the network join path);
// trusted = one n-peer snapshot through ApplyTrusted.
func conveneSnapshot(st settings, epoch uint64, n int) (perAuthor, trusted snapSample, err error) {
	ids, singles, multi, err := snapshotInputs(epoch, n)
	if err != nil {
		return perAuthor, trusted, err
	}
	sumSingles := 0
	for _, b := range singles {
		sumSingles += len(b)
	}

	rxID := peerID(0)
	verify := func(rx *ephemeral.Store) error {
		last := ids[n-1]
		v, ok := rx.Get(last, keyCursor)
		want := appendCursor(nil, cursorX(n-1), cursorY(n-1)+1)
		if err := checkf(ok && bytes.Equal(v, want), "Convene snapshot: last peer's cursor %q, want %q", v, want); err != nil {
			return err
		}
		return checkf(len(rx.Peers()) == n+1, "Convene snapshot: %d of %d peers", len(rx.Peers())-1, n)
	}
	// One fresh receiver per operation, as a joiner has: created just before and checked just
	// after its timed apply (the same as snapshotBatch in bench.mjs).
	batch := func(apply func(rx *ephemeral.Store) error) func(int) (time.Duration, error) {
		return func(count int) (time.Duration, error) {
			var el time.Duration
			for range count {
				rx, err := newStore(rxID, epoch, n)
				if err != nil {
					return 0, err
				}
				start := time.Now()
				err = apply(rx)
				el += time.Since(start)
				if err != nil {
					return 0, err
				}
				if err := verify(rx); err != nil {
					return 0, err
				}
			}
			return el, nil
		}
	}

	s, err := st.measure(1, batch(func(rx *ephemeral.Store) error {
		for p := range n {
			if _, err := rx.Apply(time.Now(), ids[p], singles[p]); err != nil {
				return err
			}
		}
		return nil
	}))
	if err != nil {
		return perAuthor, trusted, err
	}
	perAuthor = snapSample{sample: s, Bytes: sumSingles}
	s, err = st.measure(1, batch(func(rx *ephemeral.Store) error {
		_, err := rx.ApplyTrusted(time.Now(), multi)
		return err
	}))
	if err != nil {
		return perAuthor, trusted, err
	}
	trusted = snapSample{sample: s, Bytes: len(multi)}
	return perAuthor, trusted, nil
}
