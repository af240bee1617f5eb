package p2p

import (
	"context"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/zeroconf/v2"
	ma "github.com/multiformats/go-multiaddr"
)

// Healing: a host finds the peers it had again by itself after a
// partition. Constants, not tunables: they are the behaviour documented in
// doc.go ("Healing after a partition").
const (
	// A kept peer whose last connection closed is redialled after
	// redialMin, the wait doubling up to redialMax, for healFast after the
	// loss; then every healSlow until redialFor after it. The lookups
	// below go on until forgetAfter, when the peer is forgotten. Every
	// wait is jittered by ±25 %.
	redialMin   = 250 * time.Millisecond
	redialMax   = 4 * time.Second
	healFast    = 5 * time.Minute
	healSlow    = 30 * time.Second
	redialFor   = time.Hour
	forgetAfter = 24 * time.Hour

	// redialTimeout bounds one redial: shorter than connectTimeout so
	// that a dial stuck on a dead link gives way to a fresh one soon
	// after the link returns.
	redialTimeout = 5 * time.Second

	// While a kept peer is lost, mDNS is asked again (a fresh browse: the
	// running one reports each peer only once per record lifetime) and
	// every rendezvous looks its namespace up again: at once on the loss,
	// then every redialMax during healFast, then every healSlow.
	// mdnsBrowseFor is how long one extra browse listens for answers.
	mdnsBrowseFor = 2 * time.Second

	// maxKept bounds the peers a host remembers; maxKeptAddrs bounds the
	// addresses remembered per peer.
	maxKept      = 4096
	maxKeptAddrs = 16
)

// kept is a peer the host stays connected to.
type kept struct {
	addrs   []ma.Multiaddr
	suspect bool      // a connection closed: check whether it was the last
	lostAt  time.Time // zero while connected
	next    time.Time // next redial, while lost and not dialling
	backoff time.Duration
	dialing bool
}

// jitter returns d ± 25 %.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.75 + 0.5*rand.Float64()))
}

// Keep asks the host to stay connected to p: whenever its last connection
// closes, the host redials it (at the addresses it had) with backoff and
// jitter, asks mDNS again and re-runs every rendezvous, as described under
// "Healing after a partition" in the package documentation. Peers found
// by mDNS or rendezvous and bootstrap peers are kept without asking; the
// repo keeps every room member it hears from. A peer that is not connected
// when Keep is called is not dialled until it has been connected and lost.
// A lost peer is redialled for an hour and forgotten after a day.
func (h *Host) Keep(p peer.ID) {
	h.keep(p, nil)
}

// Forget undoes Keep: p is no longer redialled or looked for (the repo
// forgets a member that said goodbye in every room it shared). Discovery
// keeps it again if it finds it again.
func (h *Host) Forget(p peer.ID) {
	h.healMu.Lock()
	delete(h.kept, p)
	h.healMu.Unlock()
}

func (h *Host) keep(p peer.ID, addrs []ma.Multiaddr) {
	if p == h.h.ID() || p == "" {
		return
	}
	h.healMu.Lock()
	defer h.healMu.Unlock()
	e := h.kept[p]
	if e == nil {
		if len(h.kept) >= maxKept {
			return
		}
		e = &kept{}
		h.kept[p] = e
	}
	e.addrs = mergeAddrs(e.addrs, addrs)
}

// mergeAddrs adds the addresses of add not in to, up to maxKeptAddrs.
func mergeAddrs(to, add []ma.Multiaddr) []ma.Multiaddr {
	for _, a := range add {
		if len(to) >= maxKeptAddrs {
			break
		}
		dup := false
		for _, b := range to {
			if a.Equal(b) {
				dup = true
				break
			}
		}
		if !dup {
			to = append(to, a)
		}
	}
	return to
}

// notifiee returns the network notifications the healer listens to. They
// only mark and poke: the heal loop does the work.
func (h *Host) notifiee() *network.NotifyBundle {
	return &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			h.healMu.Lock()
			if e := h.kept[c.RemotePeer()]; e != nil {
				e.suspect = true // the loop sees it connected and clears the loss
				if c.Stat().Direction == network.DirOutbound {
					e.addrs = mergeAddrs(e.addrs, []ma.Multiaddr{c.RemoteMultiaddr()})
				}
			}
			h.healMu.Unlock()
			h.pokeHeal()
		},
		DisconnectedF: func(_ network.Network, c network.Conn) {
			h.healMu.Lock()
			e := h.kept[c.RemotePeer()]
			if e != nil {
				e.suspect = true
			}
			h.healMu.Unlock()
			if e != nil {
				h.pokeHeal()
			}
		},
	}
}

func (h *Host) pokeHeal() {
	select {
	case h.healPoke <- struct{}{}:
	default:
	}
}

// healLoop redials lost kept peers and re-runs discovery while any is
// lost.
func (h *Host) healLoop() {
	defer h.wg.Done()
	var requery time.Time // next mDNS browse and rendezvous kick while a peer is lost
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		wake := h.healStep(time.Now(), &requery)
		t.Reset(time.Until(wake))
		select {
		case <-h.ctx.Done():
			return
		case <-h.healPoke:
		case <-t.C:
		}
	}
}

// healStep does what is due at now and returns when to run again.
func (h *Host) healStep(now time.Time, requery *time.Time) time.Time {
	wake := now.Add(time.Hour)
	newLoss, anyLost, anyFast := false, false, false
	// Connectedness takes the swarm's locks: ask it without holding
	// healMu, which the swarm's notifications take.
	h.healMu.Lock()
	peers := make([]peer.ID, 0, len(h.kept))
	for p := range h.kept {
		peers = append(peers, p)
	}
	h.healMu.Unlock()
	conn := make(map[peer.ID]bool, len(peers))
	for _, p := range peers {
		conn[p] = h.connected(p)
	}
	h.healMu.Lock()
	for p, e := range h.kept {
		connected, seen := conn[p]
		if !seen {
			continue // kept since the snapshot: next round
		}
		if e.suspect {
			e.suspect = false
			if !connected && e.lostAt.IsZero() {
				e.lostAt = now
				e.backoff = redialMin
				e.next = now.Add(jitter(redialMin))
				e.addrs = mergeAddrs(e.addrs, h.h.Peerstore().Addrs(p))
				newLoss = true
				log.Debugw("heal: kept peer lost", "peer", p)
			}
		}
		if e.lostAt.IsZero() {
			continue
		}
		if connected {
			log.Debugw("heal: kept peer back", "peer", p, "after", now.Sub(e.lostAt))
			e.lostAt = time.Time{}
			continue
		}
		lost := now.Sub(e.lostAt)
		if lost >= forgetAfter {
			delete(h.kept, p)
			continue
		}
		anyLost = true
		anyFast = anyFast || lost < healFast
		if e.dialing || lost >= redialFor {
			continue
		}
		if !now.Before(e.next) && len(e.addrs) > 0 {
			e.dialing = true
			info := peer.AddrInfo{ID: p, Addrs: append([]ma.Multiaddr(nil), e.addrs...)}
			if !h.goTracked(func() { h.redial(info) }) {
				e.dialing = false
			}
			continue
		}
		if len(e.addrs) > 0 && e.next.Before(wake) {
			wake = e.next
		}
	}
	h.healMu.Unlock()

	if !anyLost {
		*requery = time.Time{}
		return wake
	}
	if newLoss || requery.IsZero() || !now.Before(*requery) {
		every := healSlow
		if anyFast {
			every = redialMax
		}
		*requery = now.Add(jitter(every))
		h.rediscover()
	}
	return minTime(wake, *requery)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// redial dials a lost kept peer once, bypassing the swarm's dial backoff
// (which grows to minutes), and schedules the next attempt.
func (h *Host) redial(info peer.AddrInfo) {
	ctx, cancel := context.WithTimeout(network.WithForceDirectDial(h.ctx, "convene: redial a kept peer"), redialTimeout)
	defer cancel()
	err := h.h.Connect(ctx, info)
	if err != nil {
		log.Debugw("heal: redial failed", "peer", info.ID, "err", err)
	} else {
		log.Debugw("heal: redialled", "peer", info.ID)
	}
	now := time.Now()
	h.healMu.Lock()
	if e := h.kept[info.ID]; e != nil {
		e.dialing = false
		max := redialMax
		if now.Sub(e.lostAt) >= healFast {
			max = healSlow
		}
		e.backoff = min(2*e.backoff, max)
		e.next = now.Add(jitter(e.backoff))
		e.suspect = true
	}
	h.healMu.Unlock()
	h.pokeHeal()
}

// rediscover asks mDNS again (one fresh browse) and kicks every
// rendezvous lookup and the bootstrap loop.
func (h *Host) rediscover() {
	h.healMu.Lock()
	for k := range h.kicks {
		select {
		case k <- struct{}{}:
		default:
		}
	}
	browse := h.mdns != nil && !h.browsing
	if browse {
		h.browsing = true
	}
	h.healMu.Unlock()
	select {
	case h.bootKick <- struct{}{}:
	default:
	}
	if browse && !h.goTracked(h.browse) {
		h.healMu.Lock()
		h.browsing = false
		h.healMu.Unlock()
	}
}

// browse runs one mDNS browse for mdnsBrowseFor and dials the peers it
// reports that are not connected. A fresh browse reports every peer that
// answers, unlike the long-running one, which reports each peer once per
// record lifetime.
func (h *Host) browse() {
	defer func() {
		h.healMu.Lock()
		h.browsing = false
		h.healMu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(h.ctx, mdnsBrowseFor)
	defer cancel()
	entries := make(chan *zeroconf.ServiceEntry, 64)
	browsed := make(chan struct{})
	read := make(chan struct{})
	go func() {
		defer close(read)
		for {
			select {
			case e, ok := <-entries:
				if !ok {
					return
				}
				h.mdnsEntry(e)
			case <-browsed:
				// Browse closes entries when it ran; it does not when it
				// failed to start. Take what is left either way.
				for {
					select {
					case e, ok := <-entries:
						if !ok {
							return
						}
						h.mdnsEntry(e)
					default:
						return
					}
				}
			}
		}
	}()
	if err := zeroconf.Browse(ctx, h.mdnsService, "local", entries); err != nil {
		log.Debugw("heal: mDNS browse failed", "err", err)
	}
	close(browsed)
	<-read
}

// mdnsEntry turns a browse result into peers found, as the mdns package
// does: only the TXT records matter ("dnsaddr=<multiaddr>/p2p/<ID>").
func (h *Host) mdnsEntry(e *zeroconf.ServiceEntry) {
	const prefix = "dnsaddr="
	var addrs []ma.Multiaddr
	for _, s := range e.Text {
		if !strings.HasPrefix(s, prefix) {
			continue
		}
		a, err := ma.NewMultiaddr(s[len(prefix):])
		if err != nil {
			continue
		}
		addrs = append(addrs, a)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil {
		return
	}
	for _, info := range infos {
		if info.ID == h.h.ID() || h.connected(info.ID) {
			continue
		}
		h.goTracked(func() { (*mdnsNotifee)(h).HandlePeerFound(info) })
	}
}
