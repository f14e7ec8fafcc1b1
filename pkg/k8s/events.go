package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"
	"go-micro.dev/v6"
)

// Events travel over NATS JetStream, reached by the name of its Kubernetes
// Service like every other dependency. go-micro's own pieces fall short of
// what a service that counts events needs (docs/events.md): its NATS broker
// is at most once, and its JetStream stream gives every attempt a new id and
// never checks that the server stored the event.
const (
	// FlagEventsAddress is the NATS server's URL (MICRO_EVENTS_ADDRESS).
	FlagEventsAddress = "events_address"
	// EventsService is the NATS Service's name and EventsPort its client
	// port: the default address is nats://nats:4222.
	EventsService = "nats"
	EventsPort    = 4222
	// EventsFlushTimeout bounds how long a stopping service spends
	// publishing the events it still holds, after its RPCs have drained.
	EventsFlushTimeout = 5 * time.Second
	// eventsRetryWait is the longest wait between two attempts to reach the
	// stream (NATS away): attempts start at a tenth of it and double.
	eventsRetryWait = 2 * time.Second
)

// DefaultEventsAddress is where a service finds NATS unless told otherwise.
func DefaultEventsAddress() string {
	return "nats://" + net.JoinHostPort(EventsService, strconv.Itoa(EventsPort))
}

// events is a service's connection to NATS, made on first use, and the
// metrics of what it publishes and consumes.
type events struct {
	service string
	// address is set by --events_address when the flags are parsed.
	address string
	metrics *eventMetrics

	mu      sync.Mutex
	conn    *nats.Conn
	js      jetstream.JetStream
	closers []func(context.Context)
}

type eventsKey struct{}

func newEvents(service string, reg prometheus.Registerer) *events {
	return &events{service: service, address: DefaultEventsAddress(), metrics: newEventMetrics(reg)}
}

func (e *events) flag() cli.Flag {
	return &cli.StringFlag{
		Name:        FlagEventsAddress,
		EnvVars:     []string{"MICRO_EVENTS_ADDRESS"},
		Value:       DefaultEventsAddress(),
		Destination: &e.address,
		Usage:       "URL of the NATS server (JetStream) that carries events, used by a service that publishes or consumes them; empty turns publishing off",
	}
}

// eventsOf finds the events of a service made by NewService.
func eventsOf(svc micro.Service) (*events, error) {
	if ctx := svc.Options().Context; ctx != nil {
		if e, ok := ctx.Value(eventsKey{}).(*events); ok {
			return e, nil
		}
	}
	return nil, errors.New("events: the service was not made by k8s.NewService")
}

// JetStream is the service's JetStream connection, to NATS at
// --events_address. It connects on the first call; a NATS that cannot be
// reached yet is not an error: the connection keeps trying, and each use
// fails until it succeeds. The service closes it when it stops.
func JetStream(svc micro.Service) (jetstream.JetStream, error) {
	e, err := eventsOf(svc)
	if err != nil {
		return nil, err
	}
	return e.jetStream()
}

// ErrEventsOff is JetStream's and Subscribe's error when --events_address
// is empty.
var ErrEventsOff = errors.New("events are off: --" + FlagEventsAddress + " (MICRO_EVENTS_ADDRESS) is empty")

func (e *events) jetStream() (jetstream.JetStream, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.js != nil {
		return e.js, nil
	}
	if e.address == "" {
		return nil, ErrEventsOff
	}
	log := slog.With("events", e.address)
	conn, err := nats.Connect(e.address,
		nats.Name(e.service),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(eventsRetryWait/4),
		// A connection whose server vanished without closing it (its node
		// lost) is found dead within 20 s, not nats.go's default 4 min.
		nats.PingInterval(10*time.Second),
		nats.MaxPingsOutstanding(2),
		nats.ConnectHandler(func(*nats.Conn) { log.Info("connected to NATS") }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("reconnected to NATS") }),
	)
	if err != nil {
		return nil, fmt.Errorf("events: connecting to %s: %w", e.address, err)
	}
	js, err := jetstream.New(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("events: %w", err)
	}
	e.conn, e.js = conn, js
	return js, nil
}

// onStop runs f when the service stops, before the connection closes.
func (e *events) onStop(f func(context.Context)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closers = append(e.closers, f)
}

// stop flushes what publishers hold and hands back what consumers hold, in
// EventsFlushTimeout at most, then closes the connection.
func (e *events) stop() error {
	e.mu.Lock()
	closers, conn := e.closers, e.conn
	e.closers, e.conn = nil, nil // a second stop has nothing to do
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), EventsFlushTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range closers {
		wg.Go(func() { f(ctx) })
	}
	wg.Wait()
	if conn != nil {
		conn.Close()
	}
	return nil
}

// StreamConfig is the stream of a service's events: named after the
// service, with the subjects "<service>.>", on disk. A publisher that
// retries sends the same id (Nats-Msg-Id), and the stream keeps the first of
// two events of one id that come within DuplicateWindow.
func StreamConfig(service string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       service,
		Subjects:   []string{service + ".>"},
		Storage:    jetstream.FileStorage,
		Duplicates: DuplicateWindow,
		MaxAge:     7 * 24 * time.Hour,
		MaxBytes:   256 << 20,
		Discard:    jetstream.DiscardOld,
	}
}

// DuplicateWindow is how long the stream remembers an event's id to drop a
// retried copy: longer than a publisher keeps retrying one event (its
// buffer drains in far less at any rate it can take in).
const DuplicateWindow = 2 * time.Minute

// ensureStream creates the service's stream, or updates it to
// StreamConfig.
func ensureStream(ctx context.Context, js jetstream.JetStream, service string) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, StreamConfig(service))
	if err != nil {
		return nil, fmt.Errorf("events: setting up the stream %q: %w", service, err)
	}
	return s, nil
}

// retryWait is the wait before attempt n (from 0) to reach NATS again.
func retryWait(n int) time.Duration {
	d := eventsRetryWait / 10
	for range min(n, 8) {
		d *= 2
	}
	return min(d, eventsRetryWait)
}

// sleep waits d, or less if ctx ends first; it says whether ctx is alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// eventMetrics are what a service's /metrics tell of its events, by stream.
type eventMetrics struct {
	published   *prometheus.CounterVec
	retries     *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	buffered    *prometheus.GaugeVec
	consumed    *prometheus.CounterVec
	redelivered *prometheus.CounterVec
	lag         *prometheus.HistogramVec
}

func newEventMetrics(reg prometheus.Registerer) *eventMetrics {
	m := &eventMetrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "events_published_total", Help: "Events the stream acknowledged as stored.",
		}, []string{"stream"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "events_publish_retries_total", Help: "Attempts to publish an event again, with its id, after one failed.",
		}, []string{"stream"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "events_dropped_total", Help: "Events never published: the buffer was full (NATS away too long) or the service stopped first.",
		}, []string{"stream", "reason"}),
		buffered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "events_buffered", Help: "Events waiting to be published.",
		}, []string{"stream"}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "events_consumed_total", Help: "Events handled, by result: ok (acknowledged), failed (handed back), rejected (never again).",
		}, []string{"stream", "result"}),
		redelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "events_redelivered_total", Help: "Events delivered more than once (a consumer stopped or failed before acknowledging).",
		}, []string{"stream"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "events_lag_seconds", Help: "Time from an event's publishing to its handling, for those handled ok.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms to 16 s
		}, []string{"stream"}),
	}
	reg.MustRegister(m.published, m.retries, m.dropped, m.buffered, m.consumed, m.redelivered, m.lag)
	return m
}
