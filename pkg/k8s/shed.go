package k8s

import (
	"context"
	"fmt"
	"log/slog"
	"math"
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
	// DefaultMaxInFlight bounds the requests a server holds at once, worked
	// on or queued (see limiter); more are refused at once. A request is
	// about 100-200 µs of CPU here: 256 are tens of milliseconds of work on
	// one core, already more latency than a caller wants, and a few MB of
	// memory, far from the containers' limits.
	DefaultMaxInFlight = 256
	// FlagMaxInFlight and EnvMaxInFlight set it.
	FlagMaxInFlight = "max_in_flight"
	EnvMaxInFlight  = "MICRO_MAX_IN_FLIGHT"
)

// ProbePaths are the HTTP paths never refused: the kubelet's probes must
// get through an overload, or it would restart a pod that is busy, not
// broken.
var ProbePaths = []string{"/health", "/healthz", "/livez", "/readyz"}

// shedder refuses the work a server cannot do in time (see limiter): gRPC
// calls with RESOURCE_EXHAUSTED, HTTP requests with 503 and Retry-After,
// before any of the request's body is read. Refusals are counted by
// reason, and said in the log at most once a second, not once per request.
type shedder struct {
	max      int      // set by --max_in_flight
	limiter  *limiter // made by start
	shedRPC  *prometheus.CounterVec
	shedHTTP *prometheus.CounterVec
	served   prometheus.Observer // the queue wait of requests served
	refusals prometheus.Observer // and of those refused
	refused  atomic.Int64        // since the last log line
	lastLog  atomic.Int64        // unix nanoseconds
}

func newShedder(reg *prometheus.Registry) *shedder {
	s := &shedder{
		max: DefaultMaxInFlight,
		shedRPC: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rpc_server_shed_total", Help: "RPCs refused with RESOURCE_EXHAUSTED, by reason: queue_delay (waited too long for a slot) or concurrency (max_in_flight held).",
		}, []string{"method", "reason"}),
		shedHTTP: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_server_shed_total", Help: "HTTP requests refused with 503, by reason: queue_delay (waited too long for a slot) or concurrency (max_in_flight held).",
		}, []string{"reason"}),
	}
	waited := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "server_queue_wait_seconds",
		Help:    "How long requests waited for a slot, gRPC and HTTP, by outcome: served or refused (a refusal's whole time at the server).",
		Buckets: []float64{.0001, .001, .0025, .005, .01, .025, .05, .1, .25},
	}, []string{"outcome"})
	s.served, s.refusals = waited.WithLabelValues("served"), waited.WithLabelValues("refused")
	state := func(pick func(limit float64, working, queued int) float64) func() float64 {
		return func() float64 {
			if s.limiter == nil {
				return 0
			}
			return pick(s.limiter.snapshot())
		}
	}
	reg.MustRegister(s.shedRPC, s.shedHTTP, waited,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "server_requests_in_flight", Help: "Requests worked on now, gRPC and HTTP; at most server_concurrency_limit.",
		}, state(func(_ float64, working, _ int) float64 { return float64(working) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "server_requests_queued", Help: "Requests waiting for a slot now, gRPC and HTTP.",
		}, state(func(_ float64, _, queued int) float64 { return float64(queued) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "server_concurrency_limit", Help: "Requests the server works on at once at most now: adapts to the time they take, up to --max_in_flight.",
		}, state(func(limit float64, _, _ int) float64 { return math.Floor(limit) })),
	)
	return s
}

// flag is --max_in_flight.
func (s *shedder) flag() cli.Flag {
	return &cli.IntFlag{
		Name:        FlagMaxInFlight,
		EnvVars:     []string{EnvMaxInFlight},
		Value:       DefaultMaxInFlight,
		Destination: &s.max,
		Usage:       "Requests held at once at most, worked on or queued; more are refused at once (gRPC RESOURCE_EXHAUSTED, HTTP 503)",
	}
}

func (s *shedder) start() error {
	if s.max < 1 {
		return fmt.Errorf("--%s (%s) must be at least 1, got %d", FlagMaxInFlight, EnvMaxInFlight, s.max)
	}
	s.limiter = newLimiter(s.max)
	return nil
}

// admit waits for a slot for a request that arrived at now. It returns
// when the request's work began, for done, or why it is refused; an error
// is the caller's leaving. A server that was never started (a handler
// under test) has no limit.
func (s *shedder) admit(ctx context.Context, now time.Time) (time.Time, string, error) {
	if s.limiter == nil {
		return now, "", nil
	}
	waited, reason, err := s.limiter.acquire(ctx, now)
	switch {
	case reason != "":
		s.refusals.Observe(waited.Seconds())
		s.said()
	case err == nil:
		s.served.Observe(waited.Seconds())
	}
	return now.Add(waited), reason, err
}

// done frees the slot of a request admitted at start.
func (s *shedder) done(start time.Time) {
	if s.limiter != nil {
		s.limiter.release(time.Since(start))
	}
}

// said logs the refusals, at most once a second.
func (s *shedder) said() {
	n := s.refused.Add(1)
	now, last := time.Now().UnixNano(), s.lastLog.Load()
	if now-last >= int64(time.Second) && s.lastLog.CompareAndSwap(last, now) {
		s.refused.Add(-n)
		limit, working, queued := s.limiter.snapshot()
		slog.LogAttrs(context.Background(), slog.LevelWarn, "overloaded: refusing requests",
			slog.Int64("refused", n), slog.Int("limit", int(limit)), slog.Int("working", working), slog.Int("queued", queued))
	}
}

// refusal says why a request was refused, to its caller.
func refusal(reason string) string {
	if reason == refusedQueueDelay {
		return "overloaded: no slot within the queue's bound, retry later"
	}
	return "overloaded: too many requests held, retry later"
}

// stream is the gRPC interceptor: it runs before go-micro reads the
// request. The health checks are never refused.
func (s *shedder) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	service, method := splitMethod(info.FullMethod)
	if service == "Health" || service == "Debug" && method == "Health" {
		return handler(srv, ss)
	}
	start, reason, err := s.admit(ss.Context(), time.Now())
	if err != nil {
		return status.FromContextError(err).Err()
	}
	if reason != "" {
		s.shedRPC.WithLabelValues(service+"."+method, reason).Inc()
		return status.Error(codes.ResourceExhausted, refusal(reason))
	}
	defer s.done(start)
	return handler(srv, ss)
}

// splitMethod reads "/package.Service/Method" as go-micro routes it: the
// service without its package, and the method.
func splitMethod(full string) (service, method string) {
	path, method, _ := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	return path[strings.LastIndexByte(path, '.')+1:], method
}

// http is the HTTP middleware: refused requests get 503, Retry-After and a
// JSON error. The probes' paths are never refused. The request's context
// carries when it arrived (see WithBudget).
func (s *shedder) http(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(ProbePaths, r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		arrived := time.Now()
		start, reason, err := s.admit(r.Context(), arrived)
		if err != nil {
			return // the client left: no one to answer
		}
		if reason != "" {
			s.shedHTTP.WithLabelValues(reason).Inc()
			httpapi.WriteError(w, http.StatusServiceUnavailable, refusal(reason))
			return
		}
		defer s.done(start)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), admittedKey{}, admitted{arrived, s.limiter})))
	})
}

// admitted is what the HTTP middleware tells a request's handler: when the
// request arrived, and the limiter that admitted it.
type admitted struct {
	arrived time.Time
	limiter *limiter
}

type admittedKey struct{}

// Overloaded reports whether the server of the request in ctx (an HTTP
// request served by a web service of this package) is queueing requests
// now: it works on as many at once as its limit allows, and more wait. A
// handler then goes without optional work (a brownout): the CPU it would
// take is what the queued requests wait for. At a load the server keeps
// up with, nothing queues and it is false.
func Overloaded(ctx context.Context) bool {
	a, ok := ctx.Value(admittedKey{}).(admitted)
	if !ok || a.limiter == nil {
		return false
	}
	_, _, queued := a.limiter.snapshot()
	return queued > 0
}

// WithBudget returns a context for the calls a request makes, whose
// deadline is d after the request arrived (an HTTP request served by a web
// service of this package: when its handling began, which net/http does
// as soon as its header is read), so that a request that waited for a
// slot does not then spend the whole of d. Without an arrival, it is d
// from now. An earlier deadline of ctx (a gRPC caller's) still holds.
func WithBudget(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	at := time.Now()
	if a, ok := ctx.Value(admittedKey{}).(admitted); ok {
		at = a.arrived
	}
	return context.WithDeadline(ctx, at.Add(d))
}
