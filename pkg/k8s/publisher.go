package k8s

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go-micro.dev/v6"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

const (
	// PublishBuffer is how many events a publisher holds while NATS is
	// away: at 200 events/s, 50 s of outage. Beyond it, events are
	// dropped, logged and counted (events_dropped_total), and the calls
	// that made them are answered as ever.
	PublishBuffer = 10_000
	// publishWorkers publish at once, each waiting for the stream's
	// acknowledgement. With 8, a greeter at saturation (13,000 greetings/s
	// on two cores, NATS beside it) filled its buffer and dropped a quarter
	// of its events (make bench); their cost is a goroutine each.
	publishWorkers = 32
	// publishAttemptTimeout bounds one attempt; a failed one is tried again
	// with the same id.
	publishAttemptTimeout = 2 * time.Second
	// HeaderPublishedAt is when the event was made (RFC 3339), to measure
	// its lag when it is handled.
	HeaderPublishedAt = "Published-At"
	// dropLogEvery bounds the log lines of a long outage to one per period.
	dropLogEvery = 5 * time.Second
)

// A Publisher publishes a service's events to its stream (StreamConfig),
// at least once. Publish never waits: it gives the event its id and queues
// it, and workers publish it, each attempt with that id, until the stream
// acknowledges it as stored. A retried attempt that the stream had stored
// already is dropped by the stream (DuplicateWindow).
type Publisher struct {
	stream  string
	js      jetstream.JetStream
	queue   chan *nats.Msg
	metrics *eventMetrics
	stopped atomic.Bool
	// flush ends when the workers must give up on what they hold.
	flush   context.Context
	giveUp  context.CancelFunc
	closing chan struct{}
	done    sync.WaitGroup
	drops   dropLog
}

// NewPublisher returns the publisher of svc's events, to the stream named
// after svc. It stops with svc, after svc's RPCs have drained: it publishes
// what it holds within EventsFlushTimeout and counts the rest as dropped.
// With events off (an empty --events_address) it publishes nothing.
func NewPublisher(svc micro.Service) (*Publisher, error) {
	e, err := eventsOf(svc)
	if err != nil {
		return nil, err
	}
	js, err := e.jetStream()
	if errors.Is(err, ErrEventsOff) {
		slog.Info("events are off: publishing none", "service", e.service)
		return &Publisher{}, nil
	}
	if err != nil {
		return nil, err
	}
	flush, giveUp := context.WithCancel(context.Background())
	p := &Publisher{
		stream: e.service, js: js, queue: make(chan *nats.Msg, PublishBuffer), metrics: e.metrics,
		flush: flush, giveUp: giveUp, closing: make(chan struct{}),
	}
	p.drops.stream = p.stream
	for range publishWorkers {
		p.done.Go(p.work)
	}
	e.onStop(p.close)
	return p, nil
}

// Publish queues an event with subject "<stream>.<subject>" and returns its
// id. It does not wait: when the buffer is full (NATS away for long) or the
// publisher has stopped, the event is dropped, logged and counted. The
// trace in ctx travels in the event's headers. With events off it does
// nothing and returns "".
func (p *Publisher) Publish(ctx context.Context, subject string, data []byte) string {
	if p.js == nil {
		return ""
	}
	msg := nats.NewMsg(p.stream + "." + subject)
	msg.Data = data
	id := nuid.Next()
	msg.Header.Set(jetstream.MsgIDHeader, id)
	msg.Header.Set(HeaderPublishedAt, time.Now().UTC().Format(time.RFC3339Nano))
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(http.Header(msg.Header)))
	if p.stopped.Load() {
		p.drop(msg, "stopped")
		return id
	}
	select {
	case p.queue <- msg:
		p.metrics.buffered.WithLabelValues(p.stream).Inc()
	default:
		p.drop(msg, "buffer_full")
	}
	return id
}

func (p *Publisher) drop(msg *nats.Msg, reason string) {
	p.metrics.dropped.WithLabelValues(p.stream, reason).Inc()
	p.drops.record(msg, reason)
}

// work publishes queued events until the publisher closes and its queue is
// empty, or the flush deadline passes.
func (p *Publisher) work() {
	for {
		select {
		case msg := <-p.queue:
			p.publish(msg)
		case <-p.closing:
			for {
				select {
				case msg := <-p.queue:
					p.publish(msg)
				default:
					return
				}
			}
		}
	}
}

// publish tries until the stream stores msg, or the flush deadline passes.
func (p *Publisher) publish(msg *nats.Msg) {
	defer p.metrics.buffered.WithLabelValues(p.stream).Dec()
	for attempt := 0; ; attempt++ {
		if p.flush.Err() != nil {
			p.drop(msg, "stopped")
			return
		}
		ctx, cancel := context.WithTimeout(p.flush, publishAttemptTimeout)
		_, err := p.js.PublishMsg(ctx, msg)
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			// No stream takes the subject yet (a new NATS, or one that
			// lost its data): make it, then try again.
			if _, serr := ensureStream(ctx, p.js, p.stream); serr == nil {
				_, err = p.js.PublishMsg(ctx, msg)
			}
		}
		cancel()
		if err == nil {
			p.metrics.published.WithLabelValues(p.stream).Inc()
			return
		}
		p.metrics.retries.WithLabelValues(p.stream).Inc()
		if attempt == 0 {
			slog.Debug("publishing an event failed; trying again", "stream", p.stream, "id", msg.Header.Get(jetstream.MsgIDHeader), "err", err)
		}
		sleep(p.flush, retryWait(attempt))
	}
}

// close stops taking events and publishes those queued until ctx ends; the
// rest are dropped and counted.
func (p *Publisher) close(ctx context.Context) {
	p.stopped.Store(true)
	close(p.closing)
	stop := context.AfterFunc(ctx, p.giveUp)
	defer stop()
	p.done.Wait()
	p.giveUp()
	// Any that a late Publish queued after the workers left.
	for {
		select {
		case msg := <-p.queue:
			p.metrics.buffered.WithLabelValues(p.stream).Dec()
			p.drop(msg, "stopped")
		default:
			p.drops.flush()
			return
		}
	}
}

// dropLog logs dropped events, at most one line per dropLogEvery: how many
// since the last line, and the last one's id and subject.
type dropLog struct {
	stream string
	mu     sync.Mutex
	last   time.Time
	count  int
	msg    *nats.Msg
	reason string
}

func (d *dropLog) record(msg *nats.Msg, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.count++
	d.msg, d.reason = msg, reason
	if time.Since(d.last) >= dropLogEvery {
		d.logLocked()
	}
}

func (d *dropLog) flush() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.count > 0 {
		d.logLocked()
	}
}

func (d *dropLog) logLocked() {
	slog.Warn("events dropped", "stream", d.stream, "dropped", d.count, "reason", d.reason,
		"last_id", d.msg.Header.Get(jetstream.MsgIDHeader), "last_subject", d.msg.Subject)
	d.last, d.count = time.Now(), 0
}
