// Package p2p runs Convene's libp2p host: the peer's identity key,
// listen addresses and transports, LAN discovery by mDNS, an optional
// Kademlia DHT with per-namespace rendezvous, connection limits and a clean
// Close. Higher layers (gossip, repo) take the libp2p host from
// [Host.Host] and never configure libp2p themselves.
//
//	h, err := p2p.New(ctx, p2p.Config{KeyFile: filepath.Join(dir, "identity.key")})
//	...
//	defer h.Close()
//	stop := h.Rendezvous("convene/room/lobby") // no-op without a DHT
//	defer stop()
//
// # Defaults, and why
//
// The zero [Config] is a LAN peer that needs no flags:
//
//   - Identity: an ephemeral Ed25519 key unless Config.Key or
//     Config.KeyFile is set. A key file is created on first run (mode 0600,
//     parent directories 0700, written atomically) and reused afterwards,
//     so the peer ID survives restarts. A file that exists but cannot be
//     read or decoded is an error and is never overwritten: replacing it
//     would silently change the peer's identity. [LoadOrCreateKey] is the
//     same logic for tools such as "peer id".
//   - Listen addresses ([DefaultListenAddrs]): TCP and QUIC on every IPv4
//     and IPv6 interface with kernel-chosen ports. All interfaces, because
//     mDNS advertises the addresses we listen on and a LAN peer must be able
//     to dial one; random ports, so several peers can share a machine.
//     Transports, security (TLS 1.3 and Noise) and the resource manager are
//     libp2p's defaults.
//   - mDNS is on, with service name [DefaultMDNSService] ("_convene._udp")
//     rather than libp2p's "_p2p._udp", so a peer only dials other Convene
//     peers. Every peer found is dialled (10 s timeout). mDNS needs an UP
//     interface with the MULTICAST flag; if it cannot start, New still
//     succeeds and [Host.MDNSError] says why.
//   - No DHT unless Config.Bootstrap is set ([DHTAuto]); then a DHT server.
//     Server, not libp2p's automatic mode (a client until AutoNAT proves the
//     node public), because in a closed network of peers on private
//     addresses clients never become servers and nobody stores records.
//     The protocol prefix is [DefaultDHTPrefix] ("/convene"): a private DHT,
//     not the public IPFS one, and no public bootstrap peers are used unless
//     given. A bootstrap node itself sets DHT: [DHTServer].
//   - libp2p's resource manager and limits, except that connections to
//     and from private, link-local and loopback addresses are not
//     rate-limited (libp2p exempts only loopback, and allows 0.2 new
//     connections a second per IPv4 address elsewhere, burst 16, in both
//     directions, failed dials included). Peers on a LAN, several behind
//     one address, redial each other after a partition; with libp2p's
//     limit they would spend the budget while the link is down and then
//     wait up to 5 s per connection once it is back. The per-address
//     limit on concurrent connections (8) stays. Options that bring their
//     own libp2p.ResourceManager replace all of this.
//   - Connection manager watermarks [DefaultConnLow]/[DefaultConnHigh]
//     (100/400), above libp2p's 160/192 so that a host in several busy rooms
//     is not trimmed early; GossipSub protects its mesh peers anyway.
//     Bootstrap peers are protected from trimming.
//   - libp2p metrics are off: by default libp2p registers them in the
//     global Prometheus registry, which collides when a process (a test, a
//     simulator) runs several hosts. Pass libp2p.PrometheusRegisterer in
//     Config.Options to turn them on.
//   - No PSK. With Config.PSK (32 bytes; [ParsePSK] reads the usual
//     swarm.key file) the host only talks to peers holding the same key.
//     QUIC and other UDP-based listen addresses are then dropped, because
//     libp2p's PSK protector only wraps stream transports, and New fails if
//     no address remains. This is checked before libp2p.New, because a
//     failed libp2p.New leaks goroutines.
//
// [LocalConfig] is the preset for tests and demos on one machine: loopback
// TCP only, no mDNS, no DHT, no relay.
//
// # DHT bootstrap and rendezvous
//
// New returns without waiting for the network. A background loop dials the
// bootstrap peers and triggers a DHT refresh while the routing table is
// empty, with a backoff from 100 ms to 5 s (the DHT's own retry waits two
// minutes), and checks again every 30 s so the host recovers when a
// bootstrap node restarts.
//
// [Host.Rendezvous] advertises the host under a namespace (the namespace's
// SHA-256 as a DHT provider key) and looks up the others. Advertising fails
// until the routing table has peers, so it retries with a 100 ms to 5 s
// backoff rather than libp2p's two-minute retry, re-advertises 30 s after
// the first success (the network may have been tiny then) and then every
// TTL/2 (90 min); Convene DHT nodes keep provider records for 3 h (the
// DHT's default is 48 h), so a host that stopped advertising stops being
// found within 3 h. Lookups run every 0.5 s until 10 s after the first
// successful advertisement, then every 30 s, and again whenever a kept
// peer is lost (see "Healing after a partition"); every peer found other
// than this host is dialled. In a closed network of DHT servers, peers in one
// namespace typically find each other within about 0.1–0.5 s of calling
// Rendezvous.
//
// # Healing after a partition
//
// Connections do not outlive a long partition: over a dead link a TCP
// connection's yamux keepalive closes it after about 40 s (measured in
// network namespaces), a QUIC one its idle timeout after 30 s. The mDNS
// library reports a peer once per record lifetime, and the DHT lookups of
// a rendezvous slow down to every 30 s, so neither would bring the peer
// back soon. The host therefore keeps the peers it had and finds them
// again by itself ([Host.Keep]):
//
//   - Kept peers are those found by mDNS or rendezvous and connected,
//     bootstrap peers, and (through the repo) every room member heard from
//     while connected. At most 4096 are kept, with up to 16 addresses each
//     (those it was dialled at and those the peerstore held when it was
//     lost).
//   - When a kept peer's last connection closes, it is redialled after
//     250 ms, the wait doubling up to 4 s, for 5 minutes, then every 30 s
//     until an hour after the loss. Every wait is jittered by
//     ±25 %. Redials ignore the swarm's dial backoff (which grows to
//     minutes) and give up after 5 s, so a dial stuck on a dead link makes
//     way for a fresh one soon after the link returns.
//   - While a kept peer is lost, the host asks mDNS again (one fresh browse,
//     listening 2 s, whose answers are dialled) and runs every
//     rendezvous lookup again, at once on the loss and then every 4 s
//     (±25 %) for 5 minutes, every 30 s after, until a day after the loss,
//     when the peer is forgotten; it also redials lost bootstrap peers and
//     re-checks the DHT routing table. A peer that restarted during the
//     partition (a new address or port) is found by these lookups rather
//     than by the redials.
//
// Rendezvous peers need no address of their own to come back: a lost
// kept peer kicks every rendezvous lookup, so when the peer that linked
// two groups of a room dies, each group looks the namespace up again at
// once and dials the other (dials of peers a lookup returns ignore the
// swarm's dial backoff too). Bound: members that share a DHT are one mesh
// again within 5 s of losing the peer that linked them (the lookup at
// once; if it fails, another 4 s ± 25 % later). Measured on three
// namespaces, 3 + 3 members, the linking member killed after the room had
// settled: 0.06–0.22 s in 12 runs (test/heal). The build before this
// waited for the 30 s lookup and the per-address rate limit: not one mesh
// after 10 s in 4 of 4 runs.
//
// Bound after a partition: within 5 minutes of the loss, a kept peer on a
// LAN is dialled again at most 5 s (4 s + 25 %) after the link returns, by
// both sides; the documented bound for a room to be whole again, hellos
// included, is 10 s after the link returns. Measured on two namespaces of
// 3 peers each, mDNS only, after cuts that closed every connection:
// 0.13–1.54 s in 10 runs (test/heal). After 5 minutes the redials and
// lookups run every 30 s, so the bound is 40 s, for a whole day; after
// that only the mDNS library's own reports (once per record lifetime) and
// the periodic rendezvous lookups (every 30 s) remain.
//
// # Logging
//
// This package logs through go-log's "convene/p2p" logger, quiet unless
// GOLOG_LOG_LEVEL asks otherwise. It never prints. Two libraries below it do
// their own thing, and only the program (cmd/peer) should change them,
// since both are process-wide: go-libp2p logs through log/slog (route it
// with gologshim.SetDefaultHandler), and the zeroconf library behind mDNS
// prints a few warnings with the standard library's log package (for
// example "[zeroconf] no suitable IPv6 interface" on hosts without IPv6
// multicast); silence them with log.SetOutput.
//
// # Shutdown
//
// [Host.Close] stops mDNS, cancels the rendezvous and bootstrap loops and
// in-flight discovery dials and waits for them, then closes the DHT and the
// libp2p host, in that order. It is idempotent (every call returns the
// first one's result) and leaves no goroutine behind. There is no
// Shutdown(ctx): nothing in closing a host is worth waiting for (libp2p
// says no goodbye on a connection, and the mDNS goodbye is one multicast
// sent without waiting; see [Host.Close]). The graceful stops are above
// it: gossip.Router.Shutdown and repo.Repo.Shutdown.
package p2p
