package k8s

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/micro/kubernetes/pkg/k8s/httpapi"
)

const (
	// DefaultMaxInFlight bounds the requests a server works on at once;
	// more are refused at once instead of queued. A request is about 100 µs
	// of CPU here: 256 waiting are tens of milliseconds of work on a pod's
	// half core, already more latency than a caller wants, and a few MB of
	// memory, far from the containers' limits. Past that, queueing only
	// grows memory until the OOM killer takes every request with it.
	DefaultMaxInFlight = 256
	// FlagMaxInFlight and EnvMaxInFlight set it.
	FlagMaxInFlight = "max_in_flight"
	EnvMaxInFlight  = "MICRO_MAX_IN_FLIGHT"
	// RetryAfterSeconds is what a refused HTTP request is told to wait.
	RetryAfterSeconds = 1
)

// ProbePaths are the HTTP paths never refused: the kubelet's probes must
// get through an overload, or it would restart a pod that is busy, not
// broken.
var ProbePaths = []string{"/health", "/healthz", "/livez", "/readyz"}

// shedder refuses work beyond max requests in flight: gRPC calls with
// RESOURCE_EXHAUSTED, HTTP requests with 503 and Retry-After, both at once
// and before any of the request is read. Refusals are counted, and said in
// the log at most once a second, not once per request.
type shedder struct {
	max      int           // set by --max_in_flight
	slots    chan struct{} // made by start, max long
	shedRPC  *prometheus.CounterVec
	shedHTTP prometheus.Counter
	refused  atomic.Int64 // since the last log line
	lastLog  atomic.Int64 // unix nanoseconds
}

func newShedder(reg *prometheus.Registry) *shedder {
	s := &shedder{
		max: DefaultMaxInFlight,
		shedRPC: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rpc_server_shed_total", Help: "RPCs refused with RESOURCE_EXHAUSTED: too many in flight.",
		}, []string{"method"}),
		shedHTTP: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "http_server_shed_total", Help: "HTTP requests refused with 503: too many in flight.",
		}),
	}
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "server_requests_in_flight", Help: "Requests worked on now, gRPC and HTTP; at most --max_in_flight.",
	}, func() float64 { return float64(len(s.slots)) })
	reg.MustRegister(s.shedRPC, s.shedHTTP, inFlight)
	return s
}

// flag is --max_in_flight.
func (s *shedder) flag() cli.Flag {
	return &cli.IntFlag{
		Name:        FlagMaxInFlight,
		EnvVars:     []string{EnvMaxInFlight},
		Value:       DefaultMaxInFlight,
		Destination: &s.max,
		Usage:       "Requests worked on at once at most; more are refused at once (gRPC RESOURCE_EXHAUSTED, HTTP 503)",
	}
}

func (s *shedder) start() error {
	if s.max < 1 {
		return fmt.Errorf("--%s (%s) must be at least 1, got %d", FlagMaxInFlight, EnvMaxInFlight, s.max)
	}
	s.slots = make(chan struct{}, s.max)
	return nil
}

// acquire takes a slot, or says there is none. A server that was never
// started (a handler under test) has no limit.
func (s *shedder) acquire() bool {
	if s.slots == nil {
		return true
	}
	select {
	case s.slots <- struct{}{}:
		return true
	default:
		s.said()
		return false
	}
}

func (s *shedder) release() {
	if s.slots != nil {
		<-s.slots
	}
}

// said logs the refusals, at most once a second.
func (s *shedder) said() {
	n := s.refused.Add(1)
	now, last := time.Now().UnixNano(), s.lastLog.Load()
	if now-last >= int64(time.Second) && s.lastLog.CompareAndSwap(last, now) {
		s.refused.Add(-n)
		slog.LogAttrs(context.Background(), slog.LevelWarn, "overloaded: refusing requests",
			slog.Int64("refused", n), slog.Int("max_in_flight", s.max))
	}
}

// stream is the gRPC interceptor: it runs before go-micro reads the
// request. The health checks are never refused.
func (s *shedder) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	service, method := splitMethod(info.FullMethod)
	if service == "Health" || service == "Debug" && method == "Health" {
		return handler(srv, ss)
	}
	if !s.acquire() {
		s.shedRPC.WithLabelValues(service + "." + method).Inc()
		return status.Errorf(codes.ResourceExhausted, "overloaded: more than %d requests in flight, retry later", s.max)
	}
	defer s.release()
	return handler(srv, ss)
}

// splitMethod reads "/package.Service/Method" as go-micro routes it: the
// service without its package, and the method.
func splitMethod(full string) (service, method string) {
	path, method, _ := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	return path[strings.LastIndexByte(path, '.')+1:], method
}

// http is the HTTP middleware: refused requests get 503, Retry-After and a
// JSON error. The probes' paths are never refused.
func (s *shedder) http(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(ProbePaths, r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		if !s.acquire() {
			s.shedHTTP.Inc()
			w.Header().Set("Retry-After", fmt.Sprint(RetryAfterSeconds))
			httpapi.WriteError(w, http.StatusServiceUnavailable, "overloaded: too many requests in flight, retry shortly")
			return
		}
		defer s.release()
		next.ServeHTTP(w, r)
	})
}
