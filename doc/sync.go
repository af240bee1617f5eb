package doc

import (
	"errors"
	"fmt"

	"github.com/automerge/automerge-go"

	"github.com/convene-p2p/convene/ephemeral"
)

// syncEngine is the engine's side of one sync state (the seam: automerge's
// SyncState for amEngine). Not safe for concurrent use: the handle's lock
// guards it.
type syncEngine interface {
	// generate is the next message to send, or false when there is
	// nothing new to say.
	generate() ([]byte, bool)
	// receive applies a message from the peer and returns the peer's heads
	// it carries.
	receive(msg []byte) (Heads, error)
	// save encodes the state (what soft reset reloads).
	save() []byte
}

type amSync struct{ ss *automerge.SyncState }

func (e *amEngine) newSync() syncEngine { return amSync{automerge.NewSyncState(e.d)} }

func (e *amEngine) loadSync(b []byte) (syncEngine, error) {
	ss, err := automerge.LoadSyncState(e.d, b)
	if err != nil {
		return nil, err
	}
	return amSync{ss}, nil
}

func (s amSync) generate() ([]byte, bool) {
	m, ok := s.ss.GenerateMessage()
	if !ok {
		return nil, false
	}
	return m.Bytes(), true
}

func (s amSync) receive(msg []byte) (Heads, error) {
	m, err := s.ss.ReceiveMessage(msg)
	if err != nil {
		return nil, err
	}
	return toHeads(m.Heads()), nil
}

func (s amSync) save() []byte { return s.ss.Save() }

// ErrBadSyncMessage wraps a sync message the engine refused (malformed, or
// changes it cannot apply). The document is left as it was.
var ErrBadSyncMessage = errors.New("doc: bad sync message")

// SyncState is this document's Automerge sync state with one peer: keep
// one per (peer, document), feed it every message the peer sends
// (Receive, in order) and send the peer what Generate returns, over a
// reliable ordered channel; Reset it when that channel is re-established.
// Every call runs under the handle's lock; none touches the network. Safe
// for concurrent use (through that lock).
//
// The pinned Automerge (0.5.0) can stall: both sides stop generating
// messages while their documents differ (upstream bug #702,
// notes/DOCUMENTS.md §1.4-1). CheckStall is the cure: call it once the link
// has been quiet for a while; if the peer's last heads differ from ours it
// soft-resets the state (Automerge's save/load round trip, which keeps the
// shared heads and forgets what was in flight), so Generate speaks again.
type SyncState struct {
	h    *Handle
	peer ephemeral.PeerID

	// Guarded by h.mu.
	ss    syncEngine
	gen   uint64 // h.gen when ss was made: a rollback replaces the engine
	their Heads  // the peer's heads in its last message
	heard bool   // a message was received since the last Reset
}

// NewSyncState returns a fresh sync state of this document with peer.
func (h *Handle) NewSyncState(peer ephemeral.PeerID) *SyncState {
	return &SyncState{h: h, peer: peer}
}

// Peer is the peer this state syncs with.
func (s *SyncState) Peer() ephemeral.PeerID { return s.peer }

// state returns the engine's sync state, fresh if there is none or the
// engine was replaced since; h.mu is held.
func (s *SyncState) state() syncEngine {
	if s.ss == nil || s.gen != s.h.gen {
		s.ss, s.gen = s.h.eng.newSync(), s.h.gen
	}
	return s.ss
}

// Generate returns the next sync message for the peer, or ok false when
// the state has nothing new to send.
func (s *SyncState) Generate() (msg []byte, ok bool, err error) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if s.h.closed {
		return nil, false, ErrClosed
	}
	msg, ok = s.state().generate()
	return msg, ok, nil
}

// Receive applies a sync message from the peer: the changes it carries are
// added (one Changed event with the peer as Origin if the heads moved) and
// the peer's heads remembered. A message the engine refuses, or changes
// that would take the document over MaxSize, leave the document as it was
// and return an error (ErrBadSyncMessage, ErrTooLarge); the state then
// starts afresh.
func (s *SyncState) Receive(msg []byte) error {
	h := s.h
	var their Heads
	err := h.receive(Origin{Peer: s.peer}, func() error {
		var err error
		their, err = s.state().receive(msg)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadSyncMessage, err)
		}
		return nil
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		s.ss = nil
		return err
	}
	s.their, s.heard = their, true
	return nil
}

// TheirHeads are the peer's heads as its last received message said, and
// whether any message was received since the state was made or Reset.
func (s *SyncState) TheirHeads() (Heads, bool) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return s.their, s.heard
}

// InSync reports whether the peer's last heads are ours.
func (s *SyncState) InSync() bool {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return s.heard && !s.h.closed && s.their.Equal(s.h.eng.heads())
}

// CheckStall is the idle stall check: if a message was received from the
// peer and its heads differ from ours, the state is soft-reset (see
// SyncState) and CheckStall reports true; Generate will then produce a
// message. Call it only when the link has been quiet (nothing sent or
// received for a while): while messages are in flight the heads differ
// anyway.
func (s *SyncState) CheckStall() (reset bool, err error) {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false, ErrClosed
	}
	if !s.heard || s.their.Equal(h.eng.heads()) {
		return false, nil
	}
	ss, err := h.eng.loadSync(s.state().save())
	if err != nil {
		return false, fmt.Errorf("doc: soft reset: %w", err)
	}
	s.ss = ss
	return true, nil
}

// Reset forgets everything about the peer: the next Generate starts a
// fresh sync (use it when the channel to the peer is re-established).
func (s *SyncState) Reset() {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.ss, s.their, s.heard = nil, nil, false
}

// Empty reports whether the document has no change at all (a peer syncing
// it has nothing to offer; a holder sends it a snapshot first).
func (h *Handle) Empty() bool { return len(h.Heads()) == 0 }

// ErrRefused is returned by ReceiveWithoutChanges for a message carrying
// changes the document lacks.
var ErrRefused = errors.New("doc: sync message carries changes, refused")

// ReceiveWithoutChanges is Receive for a read-only peer: a message that
// would add any change is refused (ErrRefused) and nothing of it applied;
// one that only says what the peer has and needs is received. It tries
// the message on a copy first, so it costs a fork of the document.
func (s *SyncState) ReceiveWithoutChanges(msg []byte) error {
	h := s.h
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	heads := h.eng.heads()
	fork, err := h.eng.forkAt(heads)
	var trial syncEngine
	if err == nil {
		trial, err = fork.loadSync(s.state().save())
	}
	h.mu.Unlock()
	if err != nil {
		return fmt.Errorf("doc: read-only receive: %w", err)
	}
	if _, err := trial.receive(msg); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSyncMessage, err)
	}
	if !fork.heads().Equal(heads) {
		return ErrRefused
	}
	return s.Receive(msg)
}

// Contains reports whether the document has every change in hs.
func (h *Handle) Contains(hs Heads) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	return h.eng.has(hs)
}

func (e *amEngine) has(hs Heads) bool {
	for _, x := range hs {
		if _, err := e.d.Change(automerge.ChangeHash(x)); err != nil {
			return false
		}
	}
	return true
}
