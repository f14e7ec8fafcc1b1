package k8s

import (
	"context"
	"fmt"
	"log/slog"
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
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/micro/kubernetes/pkg/k8s/httpapi"
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

// telemetry is what a service tells about each request: Prometheus metrics,
// in a registry of its own, and one log line.
type telemetry struct {
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

func newTelemetry() *telemetry {
	m := &telemetry{
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
func (m *telemetry) flag() cli.Flag {
	return &cli.StringFlag{
		Name:        FlagMetricsAddress,
		EnvVars:     []string{"MICRO_METRICS_ADDRESS"},
		Value:       net.JoinHostPort("0.0.0.0", strconv.Itoa(MetricsPort)),
		Destination: &m.addr,
		Usage:       "Address to serve Prometheus metrics on (" + MetricsPath + "); empty turns them off",
	}
}

// start serves the metrics, unless turned off.
func (m *telemetry) start() error {
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

func (m *telemetry) stop() error {
	if m.server == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.server.Shutdown(ctx)
}

// observeRPC traces, counts, times and logs every RPC the server handles.
func (m *telemetry) observeRPC(next server.HandlerFunc) server.HandlerFunc {
	return func(ctx context.Context, req server.Request, rsp any) error {
		start := time.Now()
		ctx, span := startServerSpan(ctx, req.Endpoint())
		defer span.End()
		err := next(ctx, req, rsp)
		took := time.Since(start)
		code := grpcCode(err).String()
		m.rpcDuration.WithLabelValues(req.Endpoint()).Observe(took.Seconds())
		m.rpcRequests.WithLabelValues(req.Endpoint(), code).Inc()
		// An integer: slog writes a float through encoding/json, by
		// reflection, which made this line a quarter of an RPC's CPU.
		attrs := []slog.Attr{slog.String("rpc", req.Endpoint()), slog.String("code", code), slog.Int64("duration_us", took.Microseconds())}
		if err != nil {
			detail := merrors.FromError(err).Detail
			span.SetStatus(otelcodes.Error, detail)
			attrs = append(attrs, slog.String("error", detail))
		}
		if id := traceID(ctx); id != "" {
			attrs = append(attrs, slog.String("trace_id", id))
		}
		httpapi.LogInfo(ctx, "rpc", attrs...)
		return err
	}
}

// observeHTTP traces, counts, times and logs every HTTP request. The route
// is the pattern the request matched, so paths from the outside never
// become labels or span names.
func (m *telemetry) observeHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := r.Context()
		if r.Header.Get("Traceparent") != "" { // canonical: Get need not rewrite it
			ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(r.Header))
		}
		// Untraced, the request goes on as it came: no span, no copy of
		// the request for a new context.
		var span trace.Span
		if traced(ctx) {
			ctx, span = otel.Tracer(tracerName).Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer))
			defer span.End()
			r = r.WithContext(ctx)
		}
		rec := &httpapi.StatusWriter{ResponseWriter: w, Status: http.StatusOK}
		next.ServeHTTP(rec, r)
		took, route := time.Since(start), httpapi.Route(r)

		m.httpDuration.WithLabelValues(route).Observe(took.Seconds())
		m.httpRequests.WithLabelValues(route, r.Method, strconv.Itoa(rec.Status)).Inc()
		if span == nil {
			httpapi.LogRequest(r, rec.Status, took)
			return
		}
		span.SetName(route)
		span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", rec.Status))
		if rec.Status >= http.StatusInternalServerError {
			span.SetStatus(otelcodes.Error, http.StatusText(rec.Status))
		}
		var attrs []slog.Attr
		if id := traceID(ctx); id != "" {
			attrs = append(attrs, slog.String("trace_id", id))
		}
		httpapi.LogRequest(r, rec.Status, took, attrs...)
	})
}
