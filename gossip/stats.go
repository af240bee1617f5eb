package gossip

import "sync/atomic"

// Stats counts what a Router or a Topic did with messages. Every inbound
// topic message is counted once (the first copy; pubsub drops duplicates
// before validation), under exactly one of Accepted, Malformed, Oversized,
// WrongAuthor, RateLimited or Banned (copies dropped by the pre-check
// before validation are counted per copy in PreLimited). Own publishes are counted in Published only.
// Goodbyes received directly (LeaveProtocol) are counted separately, under
// exactly one of LeaveReceived, LeaveInvalid, RateLimited or Dropped (a
// request for a room this peer is not in, or cut off by a stream error, is
// not counted).
type Stats struct {
	// Published counts own messages handed to GossipSub.
	Published uint64
	// Accepted counts remote messages that passed validation (delivered to
	// Next unless they were dropped, and relayed).
	Accepted uint64
	// Malformed counts messages whose envelope or presence state does not
	// decode (rejected: the sender is penalised).
	Malformed uint64
	// Oversized counts messages above MaxMessageSize, the envelope bounds or
	// the presence Limits (rejected).
	Oversized uint64
	// WrongAuthor counts messages whose presence state describes a peer
	// other than the signer (rejected).
	WrongAuthor uint64
	// RateLimited counts messages over their author's rate. They are
	// ignored (neither delivered nor forwarded, no penalty for relays); an
	// author that sent them to us directly is penalised through its peer
	// score instead.
	RateLimited uint64
	// Dropped counts accepted messages dropped because the consumer of Next
	// lagged and the queue was full.
	Dropped uint64
	// PreLimited counts message copies dropped before validation by the
	// pre-check: over the rate of their (forwarding peer, claimed author)
	// pair (docs/PROTOCOL.md 2.5). They cost no signature check and no
	// validation-queue slot; being unverified, they are counted per copy,
	// and a copy of the same message from another forwarder may still be
	// accepted.
	PreLimited uint64
	// Banned counts messages ignored because their author is banned for
	// its earlier invalid messages (docs/PROTOCOL.md 2.6.2).
	Banned uint64
	// FetchServed counts Fetch requests answered with state; FetchRefused
	// those answered "not in room", "refused" or "busy".
	FetchServed, FetchRefused uint64
	// FetchInvalid counts Fetch replies rejected by the local validation
	// (malformed, oversized, wrong author or wrong kind).
	FetchInvalid uint64
	// RelayAccepted counts other members' signed messages relayed in
	// Fetch replies that passed verification (signature, topic, content);
	// RelayInvalid those that did not (dropped; the rest of the reply is
	// still used).
	RelayAccepted, RelayInvalid uint64
	// LeaveAcked counts peers that acknowledged an own goodbye sent to
	// them directly (one per peer per Publish of a leave).
	LeaveAcked uint64
	// LeaveReceived counts goodbyes received directly from their author
	// and queued for Next (the GossipSub copy of the same goodbye is
	// counted in Accepted, and both are returned by Next).
	LeaveReceived uint64
	// LeaveInvalid counts direct goodbye requests rejected by validation:
	// undecodable or oversized requests, and envelopes that fail the topic
	// checks or are not of kind leave.
	LeaveInvalid uint64
	// LeaveRelayed counts other members' goodbyes passed on to our room
	// peers (once per goodbye, when its author asked for it);
	// LeaveRelayAcked the peers that acknowledged one.
	LeaveRelayed, LeaveRelayAcked uint64
	// StaleConns counts connections that did not answer the liveness check
	// made when their peer connected again (Router only): each one made
	// the Router close every connection to that peer and dial it again.
	StaleConns uint64
	// AliveMisses counts liveness checks of room peers that got no answer
	// in time while nothing else came from the peer (Router only,
	// liveness.go); Unresponsive counts the times a peer missed enough in
	// a row to be reported down to its rooms (EventPeerDown).
	AliveMisses, Unresponsive uint64
}

type counter int

const (
	cPublished counter = iota
	cAccepted
	cMalformed
	cOversized
	cWrongAuthor
	cRateLimited
	cDropped
	cPreLimited
	cBanned
	cFetchServed
	cFetchRefused
	cFetchInvalid
	cRelayAccepted
	cRelayInvalid
	cLeaveAcked
	cLeaveReceived
	cLeaveInvalid
	cLeaveRelayed
	cLeaveRelayAcked
	cStaleConns
	cAliveMisses
	cUnresponsive
	numCounters
)

type counters [numCounters]atomic.Uint64

func (c *counters) snapshot() Stats {
	return Stats{
		Published:    c[cPublished].Load(),
		Accepted:     c[cAccepted].Load(),
		Malformed:    c[cMalformed].Load(),
		Oversized:    c[cOversized].Load(),
		WrongAuthor:  c[cWrongAuthor].Load(),
		RateLimited:  c[cRateLimited].Load(),
		Dropped:      c[cDropped].Load(),
		PreLimited:   c[cPreLimited].Load(),
		Banned:       c[cBanned].Load(),
		FetchServed:  c[cFetchServed].Load(),
		FetchRefused: c[cFetchRefused].Load(),
		FetchInvalid: c[cFetchInvalid].Load(),

		RelayAccepted: c[cRelayAccepted].Load(),
		RelayInvalid:  c[cRelayInvalid].Load(),

		LeaveAcked:    c[cLeaveAcked].Load(),
		LeaveReceived: c[cLeaveReceived].Load(),
		LeaveInvalid:  c[cLeaveInvalid].Load(),

		LeaveRelayed:    c[cLeaveRelayed].Load(),
		LeaveRelayAcked: c[cLeaveRelayAcked].Load(),
		StaleConns:      c[cStaleConns].Load(),
		AliveMisses:     c[cAliveMisses].Load(),
		Unresponsive:    c[cUnresponsive].Load(),
	}
}
