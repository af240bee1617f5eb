package p2p

// ProvideValidity is how long a Convene host keeps the DHT provider records
// (rendezvous advertisements) that others store with it, and the longest
// TTL an advertisement asks for: 3 h (go-libp2p's routing discovery caps
// the TTL at 3 h; the DHT's own default validity is 48 h). Advertisers
// renew every TTL/2. Stated for other implementations (docs/PROTOCOL.md
// 2.13).
const ProvideValidity = provideValidity
