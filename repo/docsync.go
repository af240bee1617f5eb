package repo

import (
	"context"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/docsync"
	"github.com/libp2p/go-libp2p/core/peer"
)

// docSource is the Repo as docsync.Docs: lookups that never create a
// document.
type docSource struct{ r *Repo }

func (s docSource) Lookup(ctx context.Context, id string) (*doc.Handle, bool, error) {
	d := &s.r.docs
	d.mu.Lock()
	deleted, known := d.deleted[id], d.index[id]
	d.mu.Unlock()
	if deleted || !known {
		return nil, deleted, nil
	}
	h, err := s.r.Doc(ctx, id)
	return h, false, err
}

func (s docSource) Resolve(p peer.ID, g docsync.Digest) (string, bool) {
	d := &s.r.docs
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range d.index {
		if docsync.DocDigest(p, id) == g {
			return id, true
		}
	}
	return "", false
}

// startSync starts document sync on the Repo's host (New).
func (r *Repo) startSync() error {
	cfg := r.cfg.DocSync
	switch {
	case cfg.PubSub != nil, r.cfg.DisableAnnouncements:
	case r.cfg.PubSub != nil:
		cfg.PubSub = r.cfg.PubSub // the app's filter must admit the topic
	default:
		cfg.PubSub = r.router.Extra() // admitted by announceTopics
	}
	svc, err := docsync.New(r.host, docSource{r}, cfg)
	if err != nil {
		return err
	}
	r.sync = svc
	return nil
}

// announceTopics are the extra topics of the router the Repo starts: the
// namespace's announcement topic, unless announcements are off or go
// elsewhere (DocSync.PubSub).
func (r *Repo) announceTopics() []string {
	if r.cfg.DisableAnnouncements || r.cfg.DocSync.PubSub != nil {
		return nil
	}
	return []string{docsync.AnnounceTopic(r.cfg.DocSync.Namespace)}
}

// SyncStats returns the document sync counters (docsync.Stats).
func (r *Repo) SyncStats() docsync.Stats { return r.sync.Stats() }

// FindDoc returns document id once it has data: from storage at once, else
// from a connected peer. If no peer has it (every one asked said so, or
// Config.DocSync.FindTimeout ran out) it returns the open, empty handle
// with docsync.ErrUnavailable; later arrivals still fill it. A document
// FindDoc opens gets no genesis (neither Config.Docs.Init nor any other):
// its first change is the one of the peer that has it.
func (r *Repo) FindDoc(ctx context.Context, id string) (*doc.Handle, error) {
	h, err := r.openDoc(ctx, id, nil, false)
	if err != nil {
		return nil, err
	}
	return h, r.sync.Find(ctx, h)
}
