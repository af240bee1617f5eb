package ephemeral

import "time"

// The public API other packages code against; changing a signature breaks this file.
var (
	_ func(Config) (*Store, error)                                           = New
	_ func([]byte, PeerID, Limits) error                                     = Verify
	_ func(Version, Version) bool                                            = Version.Less
	_ func(Cause) string                                                     = Cause.String
	_ func(Change) bool                                                      = Change.Empty
	_ func(*Store, time.Time, string, []byte) (Change, error)                = (*Store).Set
	_ func(*Store, time.Time, string, []byte, time.Duration) (Change, error) = (*Store).SetTTL
	_ func(*Store, time.Time, string) (Change, error)                        = (*Store).Delete
	_ func(*Store) PeerID                                                    = (*Store).Self
	_ func(*Store) uint64                                                    = (*Store).Epoch
	_ func(*Store, PeerID, string) ([]byte, bool)                            = (*Store).Get
	_ func(*Store, PeerID) map[string][]byte                                 = (*Store).State
	_ func(*Store) map[PeerID]map[string][]byte                              = (*Store).States
	_ func(*Store) []PeerID                                                  = (*Store).Peers
	_ func(*Store, PeerID) (Version, bool)                                   = (*Store).Version
	_ func(*Store, time.Time, PeerID, []byte) ([]Change, error)              = (*Store).Apply
	_ func(*Store, time.Time, []byte) ([]Change, error)                      = (*Store).ApplyTrusted
	_ func(*Store, time.Time, PeerID) error                                  = (*Store).Heard
	_ func(*Store, PeerID, Cause) Change                                     = (*Store).Remove
	_ func(*Store, time.Time) []Change                                       = (*Store).Expire
	_ func(*Store) (time.Time, bool)                                         = (*Store).NextDeadline
	_ func(*Store) []byte                                                    = (*Store).EncodeDelta
	_ func(*Store, ...PeerID) []byte                                         = (*Store).EncodeSnapshot

	_ = []error{ErrKeyTooLong, ErrValueTooLarge, ErrTooManyKeys, ErrTooManyPeers, ErrForeignPeer, ErrMalformed, ErrTooLarge}
	_ = Config{Self: "", Epoch: 0, Timeout: 0, Limits: Limits{MaxKeyLen: 0, MaxValueSize: 0, MaxKeysPerPeer: 0, MaxPeers: 0}}
	_ = Change{Peer: "", Added: nil, Updated: nil, Removed: nil, Cause: CauseLocal | CauseRemote | CauseTimeout | CauseLeave, Gone: false}
	_ = Version{Epoch: 0, Counter: 0}
)
