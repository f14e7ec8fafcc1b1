package k8s

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"
	merrors "go-micro.dev/v6/errors"
	"go-micro.dev/v6/server"
	"google.golang.org/grpc/codes"
)

const (
	// MetricsPort is where a service serves Prometheus metrics, apart from
	// its API so that scraping never competes with it or goes through a mesh
	// route meant for users.
	MetricsPort = 9090
	// MetricsPath is the path of the metrics.
	MetricsPath = "/metrics"
	// FlagMetricsAddress sets the metrics address; empty turns metrics off.
	FlagMetricsAddress = "metrics_address"
)

// metrics are one service's Prometheus metrics, in a registry of its own.
type metrics struct {
	// addr is set when the flags are parsed (to the flag's default if not
	// given): a service that never parses them, as in a test, serves none.
	addr         string
	registry     *prometheus.Registry
	rpcRequests  *prometheus.CounterVec
	rpcDuration  *prometheus.HistogramVec
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	server       *http.Server
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		rpcRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rpc_server_requests_total", Help: "RPCs handled, by method and gRPC code.",
		}, []string{"method", "code"}),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rpc_server_duration_seconds", Help: "Time to handle an RPC, by method.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10), // 100 µs to 26 s
		}, []string{"method"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_server_requests_total", Help: "HTTP requests handled, by route, method and status.",
		}, []string{"route", "method", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "http_server_duration_seconds", Help: "Time to answer an HTTP request, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"route"}),
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.rpcRequests, m.rpcDuration, m.httpRequests, m.httpDuration,
	)
	return m
}

// flag is --metrics_address, which writes the address into m.
func (m *metrics) flag() cli.Flag {
	return &cli.StringFlag{
		Name:        FlagMetricsAddress,
		EnvVars:     []string{"MICRO_METRICS_ADDRESS"},
		Value:       net.JoinHostPort("0.0.0.0", strconv.Itoa(MetricsPort)),
		Destination: &m.addr,
		Usage:       "Address to serve Prometheus metrics on (" + MetricsPath + "); empty turns them off",
	}
}

// start serves the metrics, unless turned off.
func (m *metrics) start() error {
	if m.addr == "" {
		return nil
	}
	l, err := net.Listen("tcp", m.addr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+MetricsPath, promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry}))
	m.server = &http.Server{Addr: l.Addr().String(), Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	go func() { _ = m.server.Serve(l) }()
	return nil
}

func (m *metrics) stop() error {
	if m.server == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.server.Shutdown(ctx)
}

// wrapHandler counts and times every RPC the server handles.
func (m *metrics) wrapHandler(next server.HandlerFunc) server.HandlerFunc {
	return func(ctx context.Context, req server.Request, rsp any) error {
		start := time.Now()
		err := next(ctx, req, rsp)
		m.rpcDuration.WithLabelValues(req.Endpoint()).Observe(time.Since(start).Seconds())
		m.rpcRequests.WithLabelValues(req.Endpoint(), grpcCode(err).String()).Inc()
		return err
	}
}

// grpcCode is the code an RPC's error travels as (see go-micro's gRPC server).
func grpcCode(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var merr *merrors.Error
	if !errors.As(err, &merr) {
		return codes.Unknown
	}
	switch merr.Code {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusRequestTimeout:
		return codes.DeadlineExceeded
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusInternalServerError:
		return codes.Internal
	}
	return codes.Unknown
}

// instrument counts and times every HTTP request. The route is the pattern
// the request matched, so paths from the outside never become labels.
func (m *metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		m.httpDuration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		m.httpRequests.WithLabelValues(route, r.Method, strconv.Itoa(rec.status)).Inc()
	})
}

// statusWriter remembers the status a handler writes.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(status int) {
	s.status = status
	s.ResponseWriter.WriteHeader(status)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
