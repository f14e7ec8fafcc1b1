package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"
	"go-micro.dev/v6"
	"go-micro.dev/v6/broker"
	"go-micro.dev/v6/client"
	grpcclient "go-micro.dev/v6/client/grpc"
	"go-micro.dev/v6/cmd"
	"go-micro.dev/v6/registry"
	"go-micro.dev/v6/selector"
	"go-micro.dev/v6/server"
	grpcserver "go-micro.dev/v6/server/grpc"
	"go-micro.dev/v6/web"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/micro/kubernetes/pkg/k8s/httpapi"
)

const (
	// ShutdownTimeout bounds how long a stopping service waits for in-flight
	// requests. The pods' terminationGracePeriodSeconds must stay above it.
	ShutdownTimeout = 10 * time.Second
	// MaxMessageSize bounds a gRPC message either way (gRPC's default is 4 MiB
	// in and unbounded out); a larger one fails with ResourceExhausted.
	MaxMessageSize = 1 << 20
	// ConnectionMaxAge ends a server's connections after about this long
	// (gRPC adds up to 10% either way), so that clients resolve the service
	// again and spread over pods that have come since: with
	// DNSMinResolutionInterval, a new pod gets calls within about 20 s.
	// Calls in flight get ConnectionMaxAgeGrace to finish; new ones go to a
	// new connection, without an error.
	ConnectionMaxAge      = 15 * time.Second
	ConnectionMaxAgeGrace = 10 * time.Second
)

// DefaultAddress is where every service listens unless told otherwise
// (--server_address or MICRO_SERVER_ADDRESS): all interfaces, so the pod IP
// is reachable, on DefaultPort.
func DefaultAddress() string { return net.JoinHostPort("0.0.0.0", strconv.Itoa(DefaultPort)) }

// NewService returns a go-micro gRPC service named name with the Kubernetes
// defaults described in the package comment; opts are applied after them.
func NewService(name string, opts ...micro.Option) micro.Service {
	m := newTelemetry()
	return newService(name, m, newShedder(m.registry), streamWorkers, opts...)
}

// streamWorkers is how many goroutines a service keeps to run gRPC calls
// on, with their grown stacks, instead of a new one per call (less CPU per
// call, measured). go-micro builds a new grpc.Server at every Init, five as
// a service starts, and the workers of those it drops stay idle: 128
// goroutines.
const streamWorkers = 32

// newService is NewService with the given telemetry, load shedder and
// stream workers (0: a goroutine per call, as gRPC's default).
func newService(name string, m *telemetry, shed *shedder, workers uint32, opts ...micro.Option) micro.Service {
	reg := registry.NewMemoryRegistry()
	brk := broker.NewMemoryBroker()
	// The command line compares --selector with this value to decide whether
	// to swap selectors, so it must be the selector the client ends up with.
	current := NewStaticSelector()
	ev := newEvents(name, m.registry)

	on, switchErr := fastPathsSwitch()
	fast := newFastServer(on)
	fast.Server = grpcserver.NewServer(
		server.Name(name),
		server.Version(version),
		server.Address(DefaultAddress()),
		server.Registry(reg),
		server.Broker(brk),
		grpcserver.GracefulStopTimeout(ShutdownTimeout),
		grpcserver.MaxMsgSize(MaxMessageSize),
		grpcserver.Options(
			// Refused before anything is read when too many are in
			// flight; then the fast path; what it does not serve goes
			// to go-micro, undecodable requests as InvalidArgument.
			grpc.ChainStreamInterceptor(shed.stream, fast.stream, refuseUndecodable),
			grpc.InTapHandle(fast.tap),
			grpc.NumStreamWorkers(workers),
			// Clients resolve the service's name again when a connection
			// ends: ending each after a while is how they find new pods.
			grpc.KeepaliveParams(keepalive.ServerParameters{
				MaxConnectionAge: ConnectionMaxAge, MaxConnectionAgeGrace: ConnectionMaxAgeGrace,
			}),
			// The clients' pings (see KeepaliveTime): gRPC's default
			// would close a connection pinged more often than every 5 min.
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveTime / 2}),
		),
	)
	fast.base = fast.Server.Options().Context
	defaults := []micro.Option{
		// Unary calls of every registered handler, and the calls the
		// service makes, take the fast paths (see FastPaths).
		micro.Server(fast),
		micro.Client(newClient(on, client.Selector(current), client.Registry(reg), client.Broker(brk))),
		// The broker before the registry: micro.Registry also re-points the
		// service's broker, which would otherwise be go-micro's global one.
		micro.Broker(brk),
		micro.Registry(reg),
		micro.Cmd(NewCmd(cmd.Selector(&current))),
		micro.Flags(m.flag(), shed.flag(), fastPathsFlag(on), ev.flag()),
		micro.WrapHandler(m.observeRPC),
		micro.BeforeStart(func() error { return switchErr }),
		micro.BeforeStart(logStart(name)),
		micro.BeforeStart(shed.start),
		micro.BeforeStart(m.start),
		// After the RPCs have drained: the events they published go out.
		micro.AfterStop(ev.stop),
		micro.AfterStop(m.stop),
	}
	health, stopping := newGRPCHealth(name)
	last := func(o *micro.Options) {
		current = o.Client.Options().Selector
		// Where NewPublisher, Subscribe and JetStream find the service's
		// connection to NATS.
		o.Context = context.WithValue(o.Context, eventsKey{}, ev)
		// Registered on whichever server the caller's options left in place.
		for _, h := range []any{newDebugHandler(), health} {
			if err := o.Server.Handle(o.Server.NewHandler(h)); err != nil {
				slog.Error("registering a health handler", "service", name, "err", err)
			}
		}
		// First thing when stopping: tell the probes, before draining.
		o.BeforeStop = append([]func() error{stopping}, o.BeforeStop...)
	}
	return micro.NewService(name, append(append(defaults, opts...), last)...)
}

// NewClient returns a go-micro gRPC client with the defaults of NewService:
// the static selector, an in-memory registry and broker, bounded messages,
// no retries (see fastClient.Call), trace context sent along (see
// SetupTracing), and the fast path as EnvFastPaths says. opts are applied
// after them.
func NewClient(opts ...client.Option) client.Client {
	on, err := fastPathsSwitch()
	c := newClient(on, opts...)
	c.err = err // a client has no start to fail: its calls do
	return c
}

func newClient(on *atomic.Bool, opts ...client.Option) *fastClient {
	c := newFastClient(grpcclient.NewClient(
		client.Selector(NewStaticSelector()),
		client.Registry(registry.NewMemoryRegistry()),
		client.Broker(broker.NewMemoryBroker()),
		client.Retries(0),
		grpcclient.MaxRecvMsgSize(MaxMessageSize),
		grpcclient.MaxSendMsgSize(MaxMessageSize),
		client.WrapCall(traceCall),
	), on)
	_ = c.Init(opts...) // go-micro's gRPC client's Init never fails
	return c
}

// NewCmd is the command line of every service of this package: go-micro's
// flags and MICRO_* variables, with the static selector as the one selector
// it can choose by name (kept in a map of its own rather than go-micro's
// package-level one), and pkg/k8s's default of no retries (see
// fastClient.Call) as --client_retries's: go-micro's command line sets its
// own default, 5, on every client it parses for. opts are applied after.
func NewCmd(opts ...cmd.Option) cmd.Cmd {
	c := cmd.NewCmd(append([]cmd.Option{
		// Lists --version in --help; mains answer it (PrintVersion).
		cmd.Version(version),
		func(o *cmd.Options) {
			o.Selectors = map[string]func(...selector.Option) selector.Selector{
				SelectorName: NewStaticSelector,
			}
		},
	}, opts...)...)
	app := c.App()
	flags := make([]cli.Flag, len(app.Flags))
	for i, f := range app.Flags {
		if r, ok := f.(*cli.IntFlag); ok && r.Name == "client_retries" {
			retries := *r
			retries.Value, retries.Usage = 0, "Sets the client retries (go-micro's retry only a 408)"
			f = &retries
		}
		flags[i] = f
	}
	app.Flags = flags
	return c
}

// NewWebService returns a go-micro web service named name that listens on
// DefaultAddress with HTTP timeouts, drains in-flight requests when it stops,
// and whose Options().Service.Client() calls other services with the defaults
// of NewService. opts are applied after the defaults.
func NewWebService(name string, opts ...web.Option) web.Service {
	var svc webService
	m := newTelemetry()
	shed := newShedder(m.registry)
	defaults := []web.Option{
		web.Name(name),
		web.Version(version),
		web.Address(DefaultAddress()),
		// Its gRPC server never starts: no stream workers to wait idle.
		web.MicroService(newService(name, m, shed, 0)),
		web.Server(httpapi.NewServer()),
		web.BeforeStart(logStart(name)),
		web.BeforeStart(shed.start),
		web.BeforeStart(m.start),
		web.AfterStop(m.stop),
	}
	opts = append(defaults, opts...)
	// go-micro's web service only closes its listener when it stops; shutting
	// the server down first lets in-flight requests finish.
	opts = append(opts, web.BeforeStop(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if err := svc.Options().Server.Shutdown(ctx); err != nil {
			return fmt.Errorf("draining HTTP requests: %w", err)
		}
		return nil
	}))
	svc = webService{Service: web.NewService(opts...), telemetry: m, shed: shed, parsed: new(atomic.Bool)}
	return svc
}

// ErrHelp is what a web service's Init returns when the command line only
// asked for --help: go-micro's web service prints it and returns as if the
// flags were parsed, and the caller must exit rather than serve.
var ErrHelp = errors.New("help requested")

// webService counts and times the requests of every handler, tells --help
// from a parsed command line, and hides the one error of a clean stop: the
// server's shutdown has already closed the listener that go-micro closes next.
type webService struct {
	web.Service
	telemetry *telemetry
	shed      *shedder
	parsed    *atomic.Bool // set by the command line's action, which --help skips
}

// Init parses the command line and MICRO_ variables; ErrHelp when they only
// asked for --help.
func (s webService) Init(opts ...web.Option) error {
	s.parsed.Store(false)
	opts = append(opts, func(o *web.Options) {
		action := o.Action
		o.Action = func(c *cli.Context) {
			s.parsed.Store(true)
			if action != nil {
				action(c)
			}
		}
	})
	if err := s.Service.Init(opts...); err != nil {
		return err
	}
	if !s.parsed.Load() {
		return ErrHelp
	}
	return nil
}

// Handle serves pattern with h, refusing requests beyond the bound in
// flight (see shedder) before they are counted, timed and logged: a refusal
// costs next to nothing, and an overload does not flood the log.
func (s webService) Handle(pattern string, h http.Handler) {
	s.Service.Handle(pattern, s.shed.http(s.telemetry.observeHTTP(h)))
}

func (s webService) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	s.Handle(pattern, http.HandlerFunc(h))
}

func (s webService) Run() error  { return ignoreClosed(s.Service.Run()) }
func (s webService) Stop() error { return ignoreClosed(s.Service.Stop()) }

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
