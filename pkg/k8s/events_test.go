package k8s

import (
	"context"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go-micro.dev/v6"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/micro/kubernetes/pkg/k8s/natstest"
)

// eventsService is a service of this package with its events at url, as
// --events_address would set them.
func eventsService(t *testing.T, name, url string) micro.Service {
	t.Helper()
	svc := NewService(name)
	e, err := eventsOf(svc)
	if err != nil {
		t.Fatal(err)
	}
	e.address = url
	t.Cleanup(func() { _ = e.stop() })
	return svc
}

// received collects what a handler was given.
type received struct {
	mu     sync.Mutex
	events []Event
	spans  []context.Context
}

func (r *received) handle(ctx context.Context, e Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	r.spans = append(r.spans, ctx)
	return nil
}

func (r *received) wait(t *testing.T, n int) []Event {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		got := len(r.events)
		r.mu.Unlock()
		if got >= n {
			r.mu.Lock()
			defer r.mu.Unlock()
			return append([]Event(nil), r.events...)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events handled, want %d", got, n)
		}
	}
}

// An event goes from a publisher to a consumer with its id, its time and
// its trace: the consumer's span is linked to the publisher's.
func TestEventsCarryIDAndTrace(t *testing.T) {
	nats := natstest.Start(t)
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })

	var got received
	if err := Subscribe(eventsService(t, "consumer", nats.URL), "producer", got.handle); err != nil {
		t.Fatal(err)
	}
	pub, err := NewPublisher(eventsService(t, "producer", nats.URL))
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := tp.Tracer("test").Start(context.Background(), "call")
	before := time.Now()
	id := pub.Publish(ctx, "said", []byte("hello"))
	span.End()

	e := got.wait(t, 1)[0]
	if e.ID != id || e.Subject != "producer.said" || string(e.Data) != "hello" || e.Delivery != 1 || e.Sequence == 0 {
		t.Fatalf("handled %+v, want id %s, subject producer.said, data hello, first delivery", e, id)
	}
	if e.PublishedAt.Before(before.Add(-time.Millisecond)) || e.PublishedAt.After(time.Now()) {
		t.Errorf("published at %s, want between %s and now", e.PublishedAt, before)
	}
	for _, s := range spans.GetSpans() {
		if s.Name != "producer.said process" {
			continue
		}
		if len(s.Links) != 1 || s.Links[0].SpanContext.SpanID() != span.SpanContext().SpanID() {
			t.Fatalf("the consumer's span links %v, want the publisher's span %s", s.Links, span.SpanContext().SpanID())
		}
		if s.SpanContext.TraceID() == span.SpanContext().TraceID() {
			t.Error("the consumer's span is in the publisher's trace, want a trace of its own, linked")
		}
		return
	}
	t.Fatalf("no consumer span among %d spans", len(spans.GetSpans()))
}

// NATS away: Publish does not wait, the events wait in the buffer, and
// every one is delivered, once, when NATS is back.
func TestEventsWaitForNATS(t *testing.T) {
	nats := natstest.Start(t)
	var got received
	if err := Subscribe(eventsService(t, "consumer", nats.URL), "producer", got.handle); err != nil {
		t.Fatal(err)
	}
	pub, err := NewPublisher(eventsService(t, "producer", nats.URL))
	if err != nil {
		t.Fatal(err)
	}
	pub.Publish(context.Background(), "said", []byte("before"))
	got.wait(t, 1)

	nats.Stop()
	start := time.Now()
	const away = 100
	for range away {
		pub.Publish(context.Background(), "said", []byte("while away"))
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("%d publishes with NATS away took %s: Publish waited", away, took)
	}
	nats.Restart(t)
	events := got.wait(t, 1+away)
	time.Sleep(time.Second) // a copy would come by now
	seen := map[string]bool{}
	for _, e := range got.wait(t, 1+away) {
		if seen[e.ID] {
			t.Errorf("event %s handled twice", e.ID)
		}
		seen[e.ID] = true
	}
	if len(events) != 1+away {
		t.Errorf("%d events handled, want %d", len(events), 1+away)
	}
}

// A service that stops publishes what it holds first.
func TestPublisherFlushesWhenStopping(t *testing.T) {
	nats := natstest.Start(t)
	var got received
	if err := Subscribe(eventsService(t, "consumer", nats.URL), "producer", got.handle); err != nil {
		t.Fatal(err)
	}
	producer := eventsService(t, "producer", nats.URL)
	pub, err := NewPublisher(producer)
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	for range n {
		pub.Publish(context.Background(), "said", nil)
	}
	e, _ := eventsOf(producer)
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	if id := pub.Publish(context.Background(), "said", nil); id == "" {
		t.Error("Publish after the stop gave no id")
	}
	got.wait(t, n)
}

// With an empty --events_address, a publisher publishes nothing and a
// consumer is refused.
func TestEventsOff(t *testing.T) {
	svc := eventsService(t, "off", "")
	pub, err := NewPublisher(svc)
	if err != nil {
		t.Fatal(err)
	}
	if id := pub.Publish(context.Background(), "said", nil); id != "" {
		t.Errorf("events off, Publish gave id %q", id)
	}
	if err := Subscribe(svc, "greeter", func(context.Context, Event) error { return nil }); err != ErrEventsOff {
		t.Errorf("events off, Subscribe: %v, want ErrEventsOff", err)
	}
}

// NATS away past the buffer: Publish still does not wait, and what does
// not fit is dropped, counted and logged with the last id; the rest is
// published once NATS is back.
func TestPublisherDropsPastTheBuffer(t *testing.T) {
	nats := natstest.Start(t)
	var log lockedLog
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&log, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	var got received
	if err := Subscribe(eventsService(t, "consumer", nats.URL), "producer", got.handle); err != nil {
		t.Fatal(err)
	}
	producer := eventsService(t, "producer", nats.URL)
	pub, err := NewPublisher(producer)
	if err != nil {
		t.Fatal(err)
	}
	nats.Stop()
	const over = 100
	start := time.Now()
	var ids []string
	for range PublishBuffer + over {
		ids = append(ids, pub.Publish(context.Background(), "said", nil))
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("%d publishes with NATS away took %s: Publish waited", PublishBuffer+over, took)
	}
	e, _ := eventsOf(producer)
	dropped := testutil.ToFloat64(e.metrics.dropped.WithLabelValues("producer", "buffer_full"))
	// The workers hold one event each besides the buffer.
	if dropped < over-publishWorkers || dropped > over {
		t.Fatalf("%v dropped, want %d to %d", dropped, over-publishWorkers, over)
	}
	// The first drop is logged at once, with its id: one of the last.
	line := regexp.MustCompile(`"msg":"events dropped".*"reason":"buffer_full","last_id":"([^"]+)"`).FindStringSubmatch(log.String())
	if line == nil || !slices.Contains(ids[PublishBuffer:], line[1]) {
		t.Errorf("no log line of the drops with the id of one of the last %d events:\n%s", over, log.String())
	}
	nats.Restart(t)
	got.wait(t, PublishBuffer+over-int(dropped))
}

// lockedLog is a log output safe for concurrent writes.
type lockedLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
