package k8s

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"
)

// The limiter's parameters (docs/reliability.md, "Overload", says how they
// were chosen and measured).
const (
	// queueTarget and queueInterval are CoDel's (and Facebook's "Fail at
	// Scale"): once the queue has not been empty for queueInterval, a
	// request may wait at most queueTarget. Otherwise, a burst on an idle
	// server, it may wait up to queueMaxWait, where CoDel allows the
	// interval: a refusal is then answered within 50 ms, with room to
	// spare for writing it on a busy CPU.
	queueTarget   = 5 * time.Millisecond
	queueInterval = 100 * time.Millisecond
	queueMaxWait  = 25 * time.Millisecond
	// limitWindow is how often the concurrency limit is set again, from the
	// mean time of the requests finished in it (at least limitSamples).
	limitWindow  = 100 * time.Millisecond
	limitSamples = 10
	// baseMemory is how long the best window is remembered as what a
	// request takes when nothing waits: long enough to span a burst's
	// start, short enough to follow a dependency that became slower.
	baseMemory = 10 * time.Second
	// limitTolerance is how much slower than that base a window may be
	// before the limit shrinks: a doubling is contention, not noise.
	limitTolerance = 2.0
	// limitSmoothing weighs each window's new limit (Netflix's Gradient2).
	limitSmoothing = 0.2
	// minLimit and initialLimit: a server always works on that many at
	// once (half of --max_in_flight's default). Fewer leave the CPU idle
	// while requests wait when what they wait for shares the CPU, and
	// lose the batching of many calls at once on one connection. Measured
	// in the cluster tier's burst, the web and the greeter on one core: a
	// floor of 64 served 0.26 of the capacity at 3x, 128 served 0.42, with
	// the same p99; on loopback, floors of 4 and 20 refused 4-5% of the
	// requests at 0.8 of the capacity.
	minLimit     = 128
	initialLimit = minLimit
)

// Why a request is refused: the two labels of the shed counters.
const (
	refusedQueueDelay  = "queue_delay" // it waited longer than the queue allows
	refusedConcurrency = "concurrency" // max_in_flight were held already
)

// limiter decides which requests a server works on. It works on at most
// limit at once, a bound that follows the time requests take (a gradient,
// as Envoy's adaptive concurrency filter and Netflix's concurrency-limits):
// while a window's mean stays within limitTolerance of the best recent
// window the limit grows, and when requests slow down because too many
// share the CPU, it shrinks. The others wait in a queue, held to CoDel's
// bounds and, while it stays full, served newest first (adaptive LIFO: the
// newest request is the one whose caller still waits). A request that
// could not start within those bounds (room), or past max held at once,
// is refused without waiting. So when the CPU runs out,
// the excess waits in a queue the limiter sees and refuses, not in the Go
// scheduler's, where every goroutine is slowed alike and nothing is
// refused until it is too late.
type limiter struct {
	max int

	mu        sync.Mutex
	limit     float64
	working   int
	queue     []*waiter // oldest first
	lastEmpty time.Time // the last time the queue was seen empty

	window      time.Time     // when the current window began
	mean        time.Duration // the last window's mean time of a request
	sum         time.Duration
	samples     int
	mostWorking int
	bases       [baseMemory / time.Second]time.Duration // the best window mean of each of the last seconds
	baseSecond  int64                                   // the unix second of bases[0]
}

type waiter struct {
	at    time.Time
	ready chan struct{} // closed when the request may start
}

func newLimiter(max int) *limiter {
	return &limiter{max: max, limit: float64(min(initialLimit, max)), lastEmpty: time.Now(), window: time.Now()}
}

// acquire returns when the request may start, with how long it waited, or
// refuses it with the reason. An error is the context's: the caller left.
func (l *limiter) acquire(ctx context.Context, now time.Time) (waited time.Duration, refused string, err error) {
	l.mu.Lock()
	if len(l.queue) == 0 {
		l.lastEmpty = now
		if l.working < int(l.limit) {
			l.working++
			l.mostWorking = max(l.mostWorking, l.working)
			l.mu.Unlock()
			return 0, "", nil
		}
	}
	if l.working+len(l.queue) >= l.max {
		l.mu.Unlock()
		return 0, refusedConcurrency, nil
	}
	bound := l.bound(now)
	if len(l.queue) >= l.room(bound) {
		l.mu.Unlock()
		return 0, refusedQueueDelay, nil
	}
	w := &waiter{at: now, ready: make(chan struct{})}
	l.queue = append(l.queue, w)
	l.mu.Unlock()

	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case <-w.ready:
		return time.Since(now), "", nil
	case <-timer.C:
		if l.leave(w) {
			return time.Since(now), refusedQueueDelay, nil
		}
	case <-ctx.Done():
		if l.leave(w) {
			return time.Since(now), "", ctx.Err()
		}
	}
	// Admitted while leaving: it holds a slot, so it takes it.
	return time.Since(now), "", nil
}

// bound is how long a request queued now may wait: CoDel's target once
// the queue has stayed non-empty for an interval, else queueMaxWait.
func (l *limiter) bound(now time.Time) time.Duration {
	if now.Sub(l.lastEmpty) > queueInterval {
		return queueTarget
	}
	return queueMaxWait
}

// room is how many requests the queue may hold when each may wait bound:
// as many as the slots that free within it, at the last window's mean time
// per request (Little's law). One more would wait longer and be refused
// anyway, only later: refused on arrival, it needs no timer and no
// wake-up, and on a full CPU the wake-up is what made refusals slow
// (TestBurst: 59% of them within 50 ms at the server, most of the rest
// waiting for the CPU after their 25 ms timer had fired).
func (l *limiter) room(bound time.Duration) int {
	if l.mean <= 0 {
		return l.max // no window yet: the bound alone holds the wait
	}
	return max(1, int(l.limit*float64(bound)/float64(l.mean)))
}

// leave takes w out of the queue, unless release already admitted it.
func (l *limiter) leave(w *waiter) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := slices.Index(l.queue, w)
	if i < 0 {
		return false
	}
	l.queue = slices.Delete(l.queue, i, i+1)
	if len(l.queue) == 0 {
		l.lastEmpty = time.Now()
	}
	return true
}

// release ends a request that took took, and starts queued ones in the
// slots free: the oldest while the queue is short-lived, the newest once
// it has stayed (adaptive LIFO).
func (l *limiter) release(took time.Duration) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.working--
	l.sample(now, took)
	for len(l.queue) > 0 && l.working < int(l.limit) {
		i := 0
		if now.Sub(l.lastEmpty) > queueInterval {
			i = len(l.queue) - 1
		}
		w := l.queue[i]
		l.queue = slices.Delete(l.queue, i, i+1)
		l.working++
		l.mostWorking = max(l.mostWorking, l.working)
		close(w.ready)
	}
	if len(l.queue) == 0 {
		l.lastEmpty = now
	}
}

// sample adds a finished request to the window, and at the window's end
// sets the limit again: limit × gradient + √limit, where the gradient is
// limitTolerance × base / mean, held to [½, 1], smoothed, and bounded by
// [minLimit, max]. A window in which fewer than half the limit ever worked
// at once leaves it alone: the limit was not what bounded the requests.
func (l *limiter) sample(now time.Time, took time.Duration) {
	l.sum += took
	l.samples++
	if now.Sub(l.window) < limitWindow || l.samples < limitSamples {
		return
	}
	mean := l.sum / time.Duration(l.samples)
	l.mean = mean
	base := l.remember(now, mean)
	if float64(l.mostWorking) >= l.limit/2 {
		gradient := math.Max(0.5, math.Min(1, limitTolerance*float64(base)/float64(max(mean, 1))))
		next := l.limit*gradient + math.Sqrt(l.limit)
		l.limit = math.Max(math.Min(minLimit, float64(l.max)), math.Min(float64(l.max), (1-limitSmoothing)*l.limit+limitSmoothing*next))
	}
	l.window, l.sum, l.samples, l.mostWorking = now, 0, 0, l.working
}

// remember keeps the best window mean of each of the last seconds and
// returns the best of them all: what a request takes when it does not
// wait for others.
func (l *limiter) remember(now time.Time, mean time.Duration) time.Duration {
	second := now.Unix()
	if shift := second - l.baseSecond; shift > 0 {
		n := int64(len(l.bases))
		for i := n - 1; i >= 0; i-- {
			if i >= shift {
				l.bases[i] = l.bases[i-shift]
			} else {
				l.bases[i] = 0
			}
		}
		l.baseSecond = second
	}
	if l.bases[0] == 0 || mean < l.bases[0] {
		l.bases[0] = mean
	}
	best := l.bases[0]
	for _, b := range l.bases[1:] {
		if b != 0 && b < best {
			best = b
		}
	}
	return best
}

// snapshot is the limiter's state for the metrics.
func (l *limiter) snapshot() (limit float64, working, queued int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit, l.working, len(l.queue)
}
