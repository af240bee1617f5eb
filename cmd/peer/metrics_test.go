package main

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape fetches a Prometheus text endpoint and returns each sample line's
// value by its name with labels (as printed: `name{label="v"}`).
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// `peer run --metrics 127.0.0.1:0` serves Prometheus metrics at the URL of
// its metrics event; scraped from the real process, Convene's counters
// move when presence flows and the room gauges count the members, beside
// libp2p's and the Go runtime's metrics.
func TestProcessMetricsEndpointCountsPresence(t *testing.T) {
	const wait = 20 * time.Second
	alice := startPeer(t, "alice", "--ephemeral", "--room", "lobby", "--metrics", "127.0.0.1:0")
	ready := alice.wait(wait, "alice ready", isType("ready"))
	url, _ := alice.wait(wait, "metrics event", isType("metrics"))["url"].(string)
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/metrics") {
		t.Fatalf("metrics url %q", url)
	}
	before := scrape(t, url)
	for _, name := range []string{"convene_gossip_accepted_total", `convene_rooms{status="joined"}`, "go_goroutines"} {
		if _, ok := before[name]; !ok {
			t.Errorf("no %s in the first scrape", name)
		}
	}
	libp2p := false
	for k := range before {
		libp2p = libp2p || strings.HasPrefix(k, "libp2p_")
	}
	if !libp2p {
		t.Error("no libp2p_ metrics")
	}

	bob := startPeer(t, "bob", "--ephemeral", "--room", "lobby", "--bootstrap", tcpAddr(t, ready))
	alice.wait(wait, "bob joins", memberJoined("lobby", "bob"))
	bob.send(`set cursor {"x":1}`)
	alice.wait(wait, "bob's cursor", func(m map[string]any) bool {
		return m["type"] == "presence" && m["key"] == "cursor" && m["cause"] == "remote"
	})
	deadline := time.Now().Add(wait)
	for {
		now := scrape(t, url)
		if now["convene_gossip_accepted_total"] > before["convene_gossip_accepted_total"] &&
			now[`convene_room_members{room="lobby"}`] == 2 && now[`convene_room_presence_keys{room="lobby"}`] >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics did not move: accepted %v → %v, members %v, keys %v", before["convene_gossip_accepted_total"],
				now["convene_gossip_accepted_total"], now[`convene_room_members{room="lobby"}`], now[`convene_room_presence_keys{room="lobby"}`])
		}
		select {
		case <-alice.done:
			t.Fatal("alice exited")
		case <-time.After(50 * time.Millisecond):
		}
	}
	alice.checkOutput()
}
