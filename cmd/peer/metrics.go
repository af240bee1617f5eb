package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// registerMetricsFlags adds --metrics ADDR to `peer run`.
func registerMetricsFlags(fs *flag.FlagSet, o *runOptions) {
	fs.StringVar(&o.Metrics, "metrics", "", "")
}

// metricsServer serves /metrics (Prometheus text format) on one listener:
// Convene's metrics (repo.Config.Metrics), libp2p's, and the Go and process
// collectors, in a registry of its own.
type metricsServer struct {
	reg *prometheus.Registry
	ln  net.Listener
	srv *http.Server
	end chan struct{}
}

// startMetrics listens on addr (host:port; port 0 picks one) and serves
// until close.
func startMetrics(addr string) (*metricsServer, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %q: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	m := &metricsServer{reg: reg, ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, end: make(chan struct{})}
	go func() {
		defer close(m.end)
		_ = m.srv.Serve(ln) // ErrServerClosed after close; the node runs on either way
	}()
	return m, nil
}

// url is where the metrics are served.
func (m *metricsServer) url() string { return "http://" + m.ln.Addr().String() + "/metrics" }

// close stops serving and waits for the server goroutine.
func (m *metricsServer) close() {
	_ = m.srv.Close()
	<-m.end
}

type metricsEvent struct {
	URL string `json:"url"`
}

func (metricsEvent) eventType() string { return "metrics" }

func (e metricsEvent) human() string { return "  metrics   " + e.URL }
