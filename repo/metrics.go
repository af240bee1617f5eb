package repo

import (
	"fmt"
	"reflect"
	"strings"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/convene-p2p/convene/docsync"
	"github.com/convene-p2p/convene/gossip"
	"github.com/convene-p2p/convene/room"
)

type statsType = gossip.Stats

// metricsNamespace prefixes every Convene metric.
const metricsNamespace = "convene"

// collector exports a Repo's state to Prometheus: every counter of
// gossip.Stats (as convene_gossip_<name>_total) and docsync.Stats, the
// GossipSub peer scores, gauges of the rooms (by status), their members and
// presence keys, and every counter of room.Stats per room
// (convene_room_<name>_total{room}).
// Values are read at scrape time; nothing is kept between scrapes.
type collector struct {
	r *Repo

	gossip  []statDesc
	docsync []statDesc
	room    []statDesc // per room, labelled room
	frames  *prometheus.Desc
	score   *prometheus.Desc
	rooms   *prometheus.Desc
	members *prometheus.Desc
	keys    *prometheus.Desc
}

type statDesc struct {
	field int
	desc  *prometheus.Desc
}

func newCollector(r *Repo) *collector {
	c := &collector{
		r: r,
		score: prometheus.NewDesc(metricsNamespace+"_gossip_peer_score",
			"GossipSub peer score of a connected peer (0 neutral; below -80 graylisted), refreshed every second.", []string{"peer"}, nil),
		rooms: prometheus.NewDesc(metricsNamespace+"_rooms",
			"Rooms of the Repo by status (joined, left = lingering after Leave).", []string{"status"}, nil),
		members: prometheus.NewDesc(metricsNamespace+"_room_members",
			"Members of a room, the local peer included.", []string{"room"}, nil),
		keys: prometheus.NewDesc(metricsNamespace+"_room_presence_keys",
			"Live presence keys held for a room, over every member.", []string{"room"}, nil),
		frames: prometheus.NewDesc(metricsNamespace+"_docsync_frames_total",
			"Document sync frames by type and direction (in, out) on /convene/docsync/1.0.0 streams.", []string{"type", "dir"}, nil),
	}
	c.docsync = counterDescs(reflect.TypeFor[docsync.Stats](), "docsync", "docsync.Stats.%s (see go doc docsync.Stats).")
	c.room = counterDescs(reflect.TypeFor[room.Stats](), "room", "room.Stats.%s of a room this Repo holds (see go doc room.Stats).", "room")
	c.gossip = counterDescs(reflect.TypeFor[statsType](), "gossip", "gossip.Stats.%s, summed over every room the Repo has had (see go doc gossip.Stats).")
	return c
}

// counterDescs describes every uint64 field of a Stats struct as the
// counter convene_<sub>_<field in snake case>_total.
func counterDescs(st reflect.Type, sub, help string, labels ...string) []statDesc {
	var ds []statDesc
	for i := range st.NumField() {
		f := st.Field(i)
		if f.Type.Kind() != reflect.Uint64 {
			continue
		}
		ds = append(ds, statDesc{field: i, desc: prometheus.NewDesc(
			metricsNamespace+"_"+sub+"_"+snake(f.Name)+"_total", fmt.Sprintf(help, f.Name), labels, nil)})
	}
	return ds
}

// snake turns a Go field name into a metric name part: RateLimited →
// rate_limited, FetchServed → fetch_served.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, g := range c.gossip {
		ch <- g.desc
	}
	for _, g := range c.docsync {
		ch <- g.desc
	}
	for _, g := range c.room {
		ch <- g.desc
	}
	ch <- c.frames
	ch <- c.score
	ch <- c.rooms
	ch <- c.members
	ch <- c.keys
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := reflect.ValueOf(c.r.Stats())
	for _, g := range c.gossip {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.CounterValue, float64(st.Field(g.field).Uint()))
	}
	ds := c.r.SyncStats()
	dv := reflect.ValueOf(ds)
	for _, g := range c.docsync {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.CounterValue, float64(dv.Field(g.field).Uint()))
	}
	for dir, byType := range map[string]map[docsync.FrameType]uint64{"in": ds.FramesIn, "out": ds.FramesOut} {
		for typ, n := range byType {
			ch <- prometheus.MustNewConstMetric(c.frames, prometheus.CounterValue, float64(n), typ.String(), dir)
		}
	}
	for p, s := range c.r.router.PeerScores() {
		ch <- prometheus.MustNewConstMetric(c.score, prometheus.GaugeValue, s, p.String())
	}
	byStatus := map[room.Status]int{room.Joined: 0, room.Left: 0}
	for _, rm := range c.r.Rooms() {
		status := rm.Status()
		if status == room.Closed {
			continue
		}
		byStatus[status]++
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(len(rm.Members())), rm.ID())
		keys := 0
		for _, kv := range rm.States() {
			keys += len(kv)
		}
		ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(keys), rm.ID())
		rv := reflect.ValueOf(rm.Stats())
		for _, g := range c.room {
			ch <- prometheus.MustNewConstMetric(g.desc, prometheus.CounterValue, float64(rv.Field(g.field).Uint()), rm.ID())
		}
	}
	for status, n := range byStatus {
		ch <- prometheus.MustNewConstMetric(c.rooms, prometheus.GaugeValue, float64(n), status.String())
	}
}
