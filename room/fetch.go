package room

import (
	"time"

	"github.com/convene-p2p/convene/room/roomnet"
)

// A failed join-snapshot fetch of a peer that is not (yet) a member is
// retried after 100ms, 200ms and 400ms: the peer may have subscribed to
// the topic a moment before its room could answer.
const (
	fetchRetries    = 3
	fetchRetryDelay = 100 * time.Millisecond
)

// retry is the state of the snapshot fetch retries of one peer.
type retry struct {
	at       deadline // not set: none scheduled
	attempts int
}

// fetchPurpose says why the machine wants a direct Fetch of a peer.
type fetchPurpose uint8

const (
	// fetchSnapshot: the join snapshot (on PeerUp) or an identity fill-in
	// (a delta from an unknown peer). Failure means nothing.
	fetchSnapshot fetchPurpose = 1 << iota
	// fetchProbe: a liveness probe (after PeerDown, or a message during
	// quarantine). Failure removes the member with ReasonTimeout, unless
	// it was heard from after the probe started.
	fetchProbe
)

// fetchRequest asks the shell to Fetch peer and report back through
// machine.fetched with the same purpose and start time.
type fetchRequest struct {
	peer    PeerID
	purpose fetchPurpose
	started time.Time
}

func (m *machine) requestFetch(now time.Time, p PeerID, purpose fetchPurpose) {
	if m.fetching[p]&purpose != 0 {
		return
	}
	m.fetching[p] |= purpose
	m.stats.fetches.Add(1)
	m.out.fetches = append(m.out.fetches, fetchRequest{peer: p, purpose: purpose, started: now})
}

// fetched handles the result of a fetch the machine asked for. The reply's
// relayed messages are applied for a snapshot fetch (the join snapshot):
// each as a message of its signer, admitting members this peer is not
// connected to without waiting for their answers to its hello.
func (m *machine) fetched(now time.Time, req fetchRequest, reply roomnet.FetchReply, err error) {
	m.expire(now)
	if f := m.fetching[req.peer] &^ req.purpose; f == 0 {
		delete(m.fetching, req.peer)
	} else {
		m.fetching[req.peer] = f
	}
	if m.status == Closed {
		return
	}
	if err != nil {
		m.stats.fetchesFailed.Add(1)
		if req.purpose == fetchSnapshot {
			m.scheduleRetry(now, req.peer)
			return
		}
		mem := m.members[req.peer]
		if mem != nil && mem.up.After(req.started) {
			// The transport saw the peer come up again while the probe
			// was on its way (a restarted peer whose old connection was
			// closed under the probe): probe again, over the new path.
			m.requestFetch(now, req.peer, fetchProbe)
			return
		}
		// Remove unless it was heard from well after the probe began:
		// messages still arriving then (e.g. through relays) prove it
		// alive, but those heard right after the PeerDown hint were most
		// likely queued or in flight before it died.
		if mem != nil && !mem.heard.After(req.started.Add(m.cfg.probeGrace())) {
			// Dropped after the restart grace, unless a new incarnation
			// (or a successful fetch) shows up first.
			epoch := mem.epoch
			m.stats.probesFailed.Add(1)
			m.holdFailing(now, req.peer, epoch)
			if m.status == Joined {
				// Members not connected to it got no PeerDown: tell them.
				m.publish(roomnet.Message{Kind: roomnet.KindSuspect, Epoch: m.epoch(), Subject: req.peer, SubjectEpoch: epoch})
			}
		}
		return
	}
	if msg := reply.State; msg.Kind == roomnet.KindHeartbeat || msg.Kind == roomnet.KindHello {
		m.receiveState(now, req.peer, msg, fromFetch, nil)
	}
	if req.purpose != fetchSnapshot {
		return
	}
	for _, ev := range reply.Relayed {
		if ev.Kind != roomnet.EventMessage || ev.From == m.self.Peer || ev.From == req.peer || ev.From == "" {
			continue
		}
		switch ev.Msg.Kind {
		case roomnet.KindHello, roomnet.KindHeartbeat, roomnet.KindDelta:
			m.stats.relaysUsed.Add(1)
			m.receiveState(now, ev.From, ev.Msg, fromRelay, ev.Signed)
		}
	}
}

// scheduleRetry schedules the next snapshot fetch of a peer that is not a
// member, if it has retries left.
func (m *machine) scheduleRetry(now time.Time, p PeerID) {
	if m.members[p] != nil {
		return
	}
	r := m.retries[p]
	if r.attempts >= fetchRetries {
		return
	}
	r.at.set(now.Add(fetchRetryDelay << r.attempts))
	r.attempts++
	m.retries[p] = r
}
