package room

import "log/slog"

// logPeer formats a peer ID in logs as libp2p prints it (PeerID.String:
// base58btc of the ID bytes, e.g. "12D3KooW...").
type logPeer PeerID

// LogValue implements slog.LogValuer.
func (p logPeer) LogValue() slog.Value { return slog.StringValue(PeerID(p).String()) }
