package docsync

import "sync/atomic"

// Stats are the service's counters since New (for metrics).
type Stats struct {
	// FramesIn and FramesOut count frames by type; BytesIn and BytesOut
	// count their bytes on the streams, length prefixes included.
	FramesIn, FramesOut map[FrameType]uint64
	BytesIn, BytesOut   uint64
	// Sessions: streams opened to peers (our Hello sent).
	Sessions uint64
	// Syncs: sync messages received and applied.
	Syncs uint64
	// StallResets: soft resets by the idle stall check.
	StallResets uint64
	// Refused: (peer, document) pairs or messages refused by the Allow
	// policy or the MaxDocsPerPeer limit.
	Refused uint64
	// UnavailableIn and UnavailableOut: Unavailable frames received and sent.
	UnavailableIn, UnavailableOut uint64
	// BadFrames: malformed or oversized frames (the session was reset);
	// BadSync: sync messages or snapshots the document refused.
	BadFrames, BadSync uint64
	// BehindSnapshots: snapshots sent to a peer that was behind (not
	// empty); StaleSyncs: its sync messages dropped as written before it
	// had that snapshot.
	BehindSnapshots, StaleSyncs uint64
	// Dropped: control frames dropped because a peer's queue was full.
	Dropped uint64
	// AnnouncementsIn/Out: head announcements received and published;
	// BadAnnouncements: ones that did not decode or were too large
	// (rejected by the topic validator, never forwarded).
	AnnouncementsIn, AnnouncementsOut, BadAnnouncements uint64
	// AnnouncementsSkipped: announcements not sent because every peer
	// reached on the topic syncs the document with this one already.
	AnnouncementsSkipped uint64
	// AnnounceNudges: sessions nudged, and AnnounceDials: announcers
	// connected to, because an announcement showed heads still missing
	// here after its grace.
	AnnounceNudges, AnnounceDials uint64
}

const maxType = 8

type stats struct {
	framesIn, framesOut, bytesIn, bytesOut [maxType]atomic.Uint64
	sessions, syncs, stallResets, refused  atomic.Uint64
	unavailableIn, unavailableOut          atomic.Uint64
	badFrames, badSync, dropped            atomic.Uint64
	announcementsIn, announcementsOut      atomic.Uint64
	badAnnouncements                       atomic.Uint64
	announceNudges, announceDials          atomic.Uint64
	announcementsSkipped                   atomic.Uint64
	behindSnapshots, staleSyncs            atomic.Uint64
}

func (s *stats) add(c *atomic.Uint64, n uint64) { c.Add(n) }

func slot(t FrameType) int {
	if int(t) >= maxType {
		return 0
	}
	return int(t)
}

func (s *stats) in(t FrameType, n int) {
	s.framesIn[slot(t)].Add(1)
	s.bytesIn[slot(t)].Add(uint64(n))
}

func (s *stats) out(t FrameType, n int) {
	s.framesOut[slot(t)].Add(1)
	s.bytesOut[slot(t)].Add(uint64(n))
}

func (s *stats) snapshot() Stats {
	st := Stats{
		FramesIn: map[FrameType]uint64{}, FramesOut: map[FrameType]uint64{},
		Sessions: s.sessions.Load(), Syncs: s.syncs.Load(), StallResets: s.stallResets.Load(),
		Refused: s.refused.Load(), UnavailableIn: s.unavailableIn.Load(), UnavailableOut: s.unavailableOut.Load(),
		BadFrames: s.badFrames.Load(), BadSync: s.badSync.Load(), Dropped: s.dropped.Load(),
		AnnouncementsIn: s.announcementsIn.Load(), AnnouncementsOut: s.announcementsOut.Load(),
		BadAnnouncements: s.badAnnouncements.Load(),
		AnnounceNudges:   s.announceNudges.Load(), AnnounceDials: s.announceDials.Load(),
		AnnouncementsSkipped: s.announcementsSkipped.Load(),
		BehindSnapshots:      s.behindSnapshots.Load(), StaleSyncs: s.staleSyncs.Load(),
	}
	for i := range maxType {
		if n := s.framesIn[i].Load(); n > 0 {
			st.FramesIn[FrameType(i)] = n
		}
		if n := s.framesOut[i].Load(); n > 0 {
			st.FramesOut[FrameType(i)] = n
		}
		st.BytesIn += s.bytesIn[i].Load()
		st.BytesOut += s.bytesOut[i].Load()
	}
	return st
}
