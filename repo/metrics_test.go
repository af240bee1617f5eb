package repo_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/convene-p2p/convene/doc"
	"github.com/convene-p2p/convene/repo"
)

// gather returns the registry's metrics by family name, then label values.
func gather(t *testing.T, reg *prometheus.Registry) map[string][]*dto.Metric {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string][]*dto.Metric{}
	for _, f := range fams {
		out[f.GetName()] = f.GetMetric()
	}
	return out
}

func value(ms []*dto.Metric, labels ...string) (float64, bool) {
	for _, m := range ms {
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}

// Config.Metrics exports the Repo's gossip counters, room gauges and peer
// scores, and libp2p's own metrics, to the given registerer; the counters
// move as presence flows, and Close unregisters them.
func TestMetricsMoveWhenPresenceFlowsAndGoAtClose(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := repo.LocalConfig()
	cfg.Metrics = reg
	a, err := repo.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := newRepo(t, nil)
	ra, rb := join(t, a, "m"), join(t, b, "m")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := a.Connect(ctx, b.Addrs()[0].String()); err != nil {
		t.Fatal(err)
	}
	before, _ := value(gather(t, reg)["convene_gossip_accepted_total"])
	if err := rb.SetJSON("cursor", map[string]int{"x": 1}); err != nil {
		t.Fatal(err)
	}
	for {
		m := gather(t, reg)
		acc, _ := value(m["convene_gossip_accepted_total"])
		members, _ := value(m["convene_room_members"], "room", "m")
		keys, _ := value(m["convene_room_presence_keys"], "room", "m")
		if _, ok := ra.Get(b.Self().Peer, "cursor"); ok && acc > before && members == 2 && keys >= 1 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("metrics did not move: accepted %v (before %v), members %v, keys %v", acc, before, members, keys)
		case <-time.After(20 * time.Millisecond):
		}
	}
	m := gather(t, reg)
	if n, _ := value(m["convene_room_joined_total"], "room", "m"); n != 1 {
		t.Errorf("convene_room_joined_total{room=m} = %v, want 1 (b)", n)
	}
	if n, _ := value(m["convene_room_fetches_total"], "room", "m"); n < 1 {
		t.Errorf("convene_room_fetches_total{room=m} = %v, want >= 1 (b's join snapshot)", n)
	}
	if n, ok := value(m["convene_rooms"], "status", "joined"); !ok || n != 1 {
		t.Errorf("convene_rooms{status=joined} = %v, %v; want 1", n, ok)
	}
	if _, ok := value(m["convene_gossip_published_total"]); !ok {
		t.Error("no convene_gossip_published_total")
	}
	libp2p := 0
	for name := range m {
		if strings.HasPrefix(name, "libp2p_") {
			libp2p++
		}
	}
	if libp2p == 0 {
		t.Error("no libp2p_ metrics: the host's metrics are not wired to the registerer")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for name := range gather(t, reg) {
		if strings.HasPrefix(name, "convene_") {
			t.Errorf("%s still registered after Close", name)
		}
	}
}

// TestMetricsCountDocumentSync: the docsync counters reach the registry
// when a document change flows from one repo to the other.
func TestMetricsCountDocumentSync(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := repo.LocalConfig()
	cfg.Metrics = reg
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	a, err := repo.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := newRepo(t, nil)
	if err := a.Connect(ctx, b.Addrs()[0].String()); err != nil {
		t.Fatal(err)
	}
	ha, err := a.Doc(ctx, "metrics-doc")
	if err != nil {
		t.Fatal(err)
	}
	hb, err := b.Doc(ctx, "metrics-doc")
	if err != nil {
		t.Fatal(err)
	}
	if err := hb.Change(func(tx *doc.Tx) error { return tx.Set(doc.Path{"k"}, "v") }); err != nil {
		t.Fatal(err)
	}
	for {
		m := gather(t, reg)
		bytesIn, _ := value(m["convene_docsync_bytes_in_total"])
		// The change arrives as a snapshot (a had nothing) or a sync
		// message, whichever the session's timing gives.
		snap, _ := value(m["convene_docsync_frames_total"], "type", "snapshot", "dir", "in")
		syncs, _ := value(m["convene_docsync_frames_total"], "type", "sync", "dir", "in")
		_, arrived, _ := ha.Get(doc.Path{"k"})
		if arrived && bytesIn > 0 && snap+syncs > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("docsync metrics did not move: arrived %v, bytes in %v, snapshot frames in %v, sync frames in %v", arrived, bytesIn, snap, syncs)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
