package k8s

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go-micro.dev/v6"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

const (
	// EventAckWait is how long the stream waits for a handled event's
	// acknowledgement before it delivers the event again, to any replica.
	EventAckWait = 10 * time.Second
	// eventHandleTimeout bounds a handler, well within EventAckWait.
	eventHandleTimeout = EventAckWait / 2
	// eventBatch is how many events a replica holds at once.
	eventBatch = 64
	// pullExpiry bounds each request for events, and so how long a request
	// that NATS lost (a restart) can hold a consumer idle: its heartbeats,
	// half as often, tell the client to ask again.
	pullExpiry = 5 * time.Second
	// settledEvery is how often a consumer asks the stream which events are
	// settled (Event.Settled).
	settledEvery = time.Second
)

// ErrRejectEvent, wrapped in a handler's error, says the event can never be
// handled (it is malformed): it is not delivered again.
var ErrRejectEvent = errors.New("event rejected")

// An Event is one event of a stream, as a handler gets it.
type Event struct {
	// ID is the publisher's id of the event, the same in every delivery.
	ID string
	// Subject is the full subject ("greeter.hello").
	Subject string
	Data    []byte
	// PublishedAt is when the publisher made it.
	PublishedAt time.Time
	// Sequence is the event's place in its stream.
	Sequence uint64
	// Settled is a sequence up to which every event of the stream has been
	// handled and acknowledged by this service, as the stream said at most
	// a second ago. A handler that remembers the ids it applied (to be
	// idempotent) can forget those up to it, if it also takes any event up
	// to the highest Settled it forgot with as handled: an event can still
	// come again with an older Settled (a copy another replica was still
	// handling, or one whose acknowledgement an unclean NATS restart
	// lost). services/stats keeps that Settled beside its ids.
	Settled uint64
	// Delivery counts the deliveries of this event, 1 the first time.
	Delivery uint64
}

// An EventHandler handles one event. It must be idempotent by the event's
// ID: an event is delivered at least once. nil acknowledges the event; an
// error hands it back to be delivered again, after a pause, unless it wraps
// ErrRejectEvent.
type EventHandler func(ctx context.Context, e Event) error

// Subscribe hands every event of stream to h, once for the service
// however many replicas it runs: the replicas share one durable consumer,
// named after the service, and each event goes to one of them. The
// consumer is set up in the background, and again until NATS answers.
// When the service stops, events already fetched are handled and
// acknowledged within EventsFlushTimeout; the others are handed back.
func Subscribe(svc micro.Service, stream string, h EventHandler) error {
	e, err := eventsOf(svc)
	if err != nil {
		return err
	}
	js, err := e.jetStream()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{service: e.service, stream: stream, js: js, handler: h, metrics: e.metrics, consuming: make(chan jetstream.ConsumeContext, 1)}
	var done sync.WaitGroup
	done.Go(func() { c.run(ctx) })
	e.onStop(func(stop context.Context) {
		cancel()
		done.Wait()
		c.drain(stop)
	})
	return nil
}

type consumer struct {
	service, stream string
	js              jetstream.JetStream
	handler         EventHandler
	metrics         *eventMetrics
	settled         atomic.Uint64
	// consuming receives the consumption once it runs.
	consuming chan jetstream.ConsumeContext
}

// run sets up the durable consumer, starts consuming and keeps Settled
// fresh, until ctx ends.
func (c *consumer) run(ctx context.Context) {
	var cons jetstream.Consumer
	for attempt := 0; ; attempt++ {
		var err error
		if cons, err = c.setUp(ctx); err == nil {
			break
		}
		if attempt == 0 || attempt%30 == 0 {
			slog.Warn("setting up the events consumer; trying again", "stream", c.stream, "consumer", c.service, "err", err)
		}
		if !sleep(ctx, retryWait(attempt)) {
			return
		}
	}
	cc, err := cons.Consume(c.handle, jetstream.PullMaxMessages(eventBatch), jetstream.PullExpiry(pullExpiry),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			slog.Debug("consuming events", "stream", c.stream, "err", err)
		}))
	if err != nil {
		slog.Error("consuming events", "stream", c.stream, "err", err)
		return
	}
	c.consuming <- cc
	slog.Info("consuming events", "stream", c.stream, "consumer", c.service)
	for sleep(ctx, settledEvery) {
		if info, err := cons.Info(ctx); err == nil {
			c.settled.Store(info.AckFloor.Stream)
		}
	}
}

func (c *consumer) setUp(ctx context.Context) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, publishAttemptTimeout)
	defer cancel()
	if _, err := ensureStream(ctx, c.js, c.stream); err != nil {
		return nil, err
	}
	return c.js.CreateOrUpdateConsumer(ctx, c.stream, jetstream.ConsumerConfig{
		Durable:       c.service,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       EventAckWait,
		MaxAckPending: 4 * eventBatch,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
}

// drain stops fetching and handles what was fetched, until ctx ends; what
// is left then is delivered again after EventAckWait, to another replica.
func (c *consumer) drain(ctx context.Context) {
	select {
	case cc := <-c.consuming:
		cc.Drain()
		select {
		case <-cc.Closed():
		case <-ctx.Done():
			cc.Stop()
		}
	default: // never started consuming
	}
}

func (c *consumer) handle(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		c.metrics.consumed.WithLabelValues(c.stream, "rejected").Inc()
		_ = msg.Term()
		return
	}
	e := Event{
		ID: msg.Headers().Get(jetstream.MsgIDHeader), Subject: msg.Subject(), Data: msg.Data(),
		PublishedAt: md.Timestamp, Sequence: md.Sequence.Stream, Settled: c.settled.Load(), Delivery: md.NumDelivered,
	}
	if e.ID == "" {
		e.ID = strconv.FormatUint(e.Sequence, 10)
	}
	if t, err := time.Parse(time.RFC3339Nano, msg.Headers().Get(HeaderPublishedAt)); err == nil {
		e.PublishedAt = t
	}
	if e.Delivery > 1 {
		c.metrics.redelivered.WithLabelValues(c.stream).Inc()
	}
	ctx, span := c.startSpan(msg, e)
	defer span.End()
	ctx, cancel := context.WithTimeout(ctx, eventHandleTimeout)
	defer cancel()
	switch err := c.handler(ctx, e); {
	case err == nil:
		_ = msg.Ack()
		c.metrics.consumed.WithLabelValues(c.stream, "ok").Inc()
		c.metrics.lag.WithLabelValues(c.stream).Observe(time.Since(e.PublishedAt).Seconds())
	case errors.Is(err, ErrRejectEvent):
		_ = msg.Term()
		c.metrics.consumed.WithLabelValues(c.stream, "rejected").Inc()
		span.SetStatus(codes.Error, err.Error())
		slog.ErrorContext(ctx, "event rejected", "stream", c.stream, "id", e.ID, "err", err)
	default:
		_ = msg.NakWithDelay(retryWait(int(e.Delivery)))
		c.metrics.consumed.WithLabelValues(c.stream, "failed").Inc()
		span.SetStatus(codes.Error, err.Error())
		slog.WarnContext(ctx, "handling an event failed; it will come again", "stream", c.stream, "id", e.ID, "delivery", e.Delivery, "err", err)
	}
}

// startSpan starts the consumer's span, linked to the publisher's: the
// event is handled in a trace of its own, which points at the call that
// published it.
func (c *consumer) startSpan(msg jetstream.Msg, e Event) (context.Context, trace.Span) {
	published := trace.SpanContextFromContext(otel.GetTextMapPropagator().Extract(context.Background(),
		propagation.HeaderCarrier(http.Header(msg.Headers()))))
	if !published.IsValid() && !traced(context.Background()) {
		return context.Background(), trace.SpanFromContext(context.Background()) // a no-op span
	}
	return otel.Tracer(tracerName).Start(context.Background(), e.Subject+" process",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(trace.Link{SpanContext: published}),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", e.Subject),
			attribute.String("messaging.message.id", e.ID),
			attribute.String("messaging.consumer.group.name", c.service),
			attribute.Int64("messaging.nats.delivery", int64(e.Delivery)),
		))
}
