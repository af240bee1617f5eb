package repo_test

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/convene-p2p/convene/docsync"
	"github.com/convene-p2p/convene/repo"
)

// rawSession is a docsync session a test writes by hand: one stream to a
// Repo, opened with a Hello (one stream for every ask: a second inbound
// stream from the same peer replaces the first).
type rawSession struct {
	t  *testing.T
	st network.Stream
}

func openRawSession(t *testing.T, ctx context.Context, e *plainNode, r *repo.Repo) *rawSession {
	t.Helper()
	st, err := e.h.Host().NewStream(ctx, r.ID(), protocol.ID(docsync.ProtocolID))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Reset() })
	s := &rawSession{t: t, st: st}
	s.send(docsync.Frame{Type: docsync.Hello, Version: docsync.Version, Session: uint64(time.Now().UnixNano())})
	return s
}

func (s *rawSession) send(fs ...docsync.Frame) {
	s.t.Helper()
	var b []byte
	var err error
	for _, f := range fs {
		if b, err = docsync.AppendFrame(b, f, docsync.DefaultMaxFrame); err != nil {
			s.t.Fatal(err)
		}
	}
	if _, err := s.st.Write(b); err != nil {
		s.t.Fatal(err)
	}
}

// ask sends a Have with no heads naming digest d: "I have nothing of d".
func (s *rawSession) ask(d docsync.Digest) { s.send(docsync.Frame{Type: docsync.Have, Digest: d}) }

// A digest a peer is told is no capability: under the default Share
// policy a Repo R tells every connected peer its Have for each open
// document (digest and heads, never the ID). A peer E that does not know
// the ID sends that digest back as its own Have and is told Unavailable,
// not sent the document: the digest is bound to the peer naming it
// (DocDigest(R, id) names the document only when R sends it). With one
// digest per document (docsync version 1) E got the snapshot: checked by
// running this test against that code. The control: naming the document
// as E, DocDigest(E, id), which takes the ID, gets the snapshot.
func TestReplayedHaveDigestFetchesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*syncWait)
	defer cancel()
	e := newPlainNode(t)
	var got frameLog
	e.h.Host().SetStreamHandler(protocol.ID(docsync.ProtocolID), got.handle)
	r := newRepo(t, nil)

	const id = "a-secret-document-id-9d2e71"
	h, err := r.DocWith(ctx, id, linesInit)
	if err != nil {
		t.Fatal(err)
	}
	appendLine(t, h, "something to fetch")
	e.connect(t, r)

	var told docsync.Digest
	waitUntil(t, syncWait, "R tells E its Have for the document", func() bool {
		return got.find(func(f docsync.Frame) bool {
			if f.Type == docsync.Have && len(f.Heads) > 0 {
				told = f.Digest
				return true
			}
			return false
		})
	})
	if want := docsync.DocDigest(r.ID(), id); told != want {
		t.Fatalf("R's Have names %s, want DocDigest(R, id) %s", told, want)
	}
	carries := func(f docsync.Frame) bool { return f.Doc != "" }
	if got.find(carries) {
		t.Fatalf("E received a frame naming the document before it named it: %+v", got.frames)
	}

	s := openRawSession(t, ctx, e, r)
	s.ask(told)
	waitUntil(t, syncWait, "R answers the replayed digest Unavailable", func() bool {
		return got.find(func(f docsync.Frame) bool { return f.Type == docsync.Unavailable && f.Digest == told })
	})
	if got.find(carries) {
		t.Fatalf("a replayed digest fetched the document: %+v", got.frames)
	}

	own := docsync.DocDigest(e.h.ID(), id)
	s.ask(own)
	waitUntil(t, syncWait, "R answers DocDigest(E, id) with the snapshot (the control)", func() bool {
		return got.find(func(f docsync.Frame) bool { return f.Type == docsync.Snapshot && f.Doc == id })
	})
}
