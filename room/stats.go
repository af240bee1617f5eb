package room

import "sync/atomic"

// Stats counts what a room saw and did since New, for monitoring (the
// Repo exports them to Prometheus per room). The counters only grow; read
// them with Room.Stats from any goroutine.
type Stats struct {
	// Joined counts other peers admitted as members (their MemberJoined
	// events; a restarted member replaced within its grace, with no
	// event, is not counted).
	Joined uint64
	// LeftGoodbye counts members removed on their goodbye (ReasonLeft);
	// LeftTimeout those removed as gone (ReasonTimeout: silent for
	// Timeout, a failed probe, or a suspicion that ended in silence).
	LeftGoodbye, LeftTimeout uint64
	// ProbesFailed counts direct probes of a member whose connection
	// closed that failed; each one publishes a suspect to the room.
	ProbesFailed uint64
	// Suspected counts suspicions opened on other members' suspects;
	// Refuted those cleared because the subject was heard again or
	// refuted; SuspectDrops those that ended in silence (the subject was
	// dropped, counted in LeftTimeout too); SuspectsVoid the suspects
	// ignored by the rules against accusation bursts (docs/PROTOCOL.md).
	Suspected, Refuted, SuspectDrops, SuspectsVoid uint64
	// Refutations counts own heartbeats that refuted a suspect of this
	// peer.
	Refutations uint64
	// Fetches counts the direct state fetches this room made (join
	// snapshots and probes); FetchesFailed those that failed.
	Fetches, FetchesFailed uint64
	// RelaysUsed counts other members' signed messages taken from join
	// snapshots' relays and handed to the membership logic.
	RelaysUsed uint64
	// WatchDropped counts events dropped for watchers that lagged (one
	// per watcher per event); WatchLags the Lagged events delivered.
	WatchDropped, WatchLags uint64
}

// counters is the live form of Stats, shared by the machine (which
// counts) and the Room (which reads).
type counters struct {
	joined, leftGoodbye, leftTimeout                atomic.Uint64
	probesFailed                                    atomic.Uint64
	suspected, refuted, suspectDrops, suspectsVoid  atomic.Uint64
	refutations, fetches, fetchesFailed, relaysUsed atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Joined:        c.joined.Load(),
		LeftGoodbye:   c.leftGoodbye.Load(),
		LeftTimeout:   c.leftTimeout.Load(),
		ProbesFailed:  c.probesFailed.Load(),
		Suspected:     c.suspected.Load(),
		Refuted:       c.refuted.Load(),
		SuspectDrops:  c.suspectDrops.Load(),
		SuspectsVoid:  c.suspectsVoid.Load(),
		Refutations:   c.refutations.Load(),
		Fetches:       c.fetches.Load(),
		FetchesFailed: c.fetchesFailed.Load(),
		RelaysUsed:    c.relaysUsed.Load(),
	}
}

// Stats returns the room's counters so far. It is safe to call at any
// time, also after the room is destroyed.
func (r *Room) Stats() Stats {
	s := r.stats.snapshot()
	s.WatchDropped, s.WatchLags = r.hub.b.Stats()
	return s
}
