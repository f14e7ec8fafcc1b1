package k8s

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func working(l *limiter) int {
	_, w, _ := l.snapshot()
	return w
}

func queued(l *limiter) int {
	_, _, q := l.snapshot()
	return q
}

// fill takes every slot of l, and returns when it has.
func fill(t *testing.T, l *limiter) {
	t.Helper()
	for range int(l.limit) {
		if _, reason, err := l.acquire(t.Context(), time.Now()); reason != "" || err != nil {
			t.Fatalf("a free slot: %q %v", reason, err)
		}
	}
}

type admission struct {
	id     int
	reason string
	err    error
	waited time.Duration
}

// enqueue starts a request that waits, and returns once it is queued (or
// already answered).
func enqueue(t *testing.T, ctx context.Context, l *limiter, id int, out chan<- admission) {
	t.Helper()
	at := time.Now().Add(time.Duration(id)) // tells its waiter from the others
	answered := make(chan struct{})
	go func() {
		waited, reason, err := l.acquire(ctx, at)
		close(answered)
		out <- admission{id: id, reason: reason, err: err, waited: waited}
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Microsecond) {
		l.mu.Lock()
		queued := slices.ContainsFunc(l.queue, func(w *waiter) bool { return w.at.Equal(at) })
		l.mu.Unlock()
		select {
		case <-answered:
			return
		default:
		}
		if queued {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the request never queued")
		}
	}
}

// A request beyond the limit waits, and starts when a slot frees; beyond
// max held, one is refused without waiting.
func TestLimiterQueuesThenAdmits(t *testing.T) {
	l := newLimiter(5)
	fill(t, l) // min(initialLimit, 5) = 5
	if _, reason, _ := l.acquire(t.Context(), time.Now()); reason != refusedConcurrency {
		t.Fatalf("beyond max held: %q, want %q", reason, refusedConcurrency)
	}

	l = newLimiter(1000)
	fill(t, l)
	out := make(chan admission, 1)
	enqueue(t, t.Context(), l, 1, out)
	l.release(time.Millisecond)
	if a := <-out; a.reason != "" || a.err != nil {
		t.Fatalf("a queued request when a slot frees: %+v, want admitted", a)
	}
	if got := working(l); got != initialLimit {
		t.Errorf("working %d, want the limit, %d", got, initialLimit)
	}
}

// A queue that was empty a moment ago holds a request up to queueMaxWait;
// once it has stayed non-empty for the interval, only to the target. Then
// a free slot goes to the newest request, not the oldest (adaptive LIFO).
func TestLimiterHoldsTheQueueToCoDelsBounds(t *testing.T) {
	l := newLimiter(1000)
	fill(t, l)
	out := make(chan admission, 32)
	enqueue(t, t.Context(), l, 1, out)
	a := <-out
	if a.reason != refusedQueueDelay || a.waited < queueMaxWait || a.waited > queueMaxWait+50*time.Millisecond {
		t.Fatalf("from a fresh queue: %+v, want refused for %q after %s", a, refusedQueueDelay, queueMaxWait)
	}

	// A queue that has not been empty for longer than the interval: one
	// request after another, each refused after queueMaxWait.
	id := 1
	for start := time.Now(); time.Since(start) <= queueInterval; {
		id++
		enqueue(t, t.Context(), l, id, out)
		time.Sleep(queueMaxWait / 2)
	}
	enqueue(t, t.Context(), l, 100, out)
	enqueue(t, t.Context(), l, 101, out)
	l.release(time.Millisecond)
	got := map[int]admission{}
	for range id + 1 {
		a := <-out
		got[a.id] = a
	}
	if a := got[101]; a.reason != "" {
		t.Errorf("the newest request when a slot freed: %+v, want it admitted", a)
	}
	if a := got[100]; a.reason != refusedQueueDelay || a.waited > queueTarget+20*time.Millisecond {
		t.Errorf("queued after the queue stayed: %+v, want refused after about %s", a, queueTarget)
	}
	if a := got[2]; a.reason != refusedQueueDelay || a.waited < queueMaxWait {
		t.Errorf("queued while it was fresh: %+v, want refused after %s", a, queueMaxWait)
	}
}

// A request that finds queued ahead of it as many as the slots that free
// within its bound is refused on arrival, without waiting; one that finds
// fewer queues. The bound is the queue's: queueTarget once it has stayed.
func TestLimiterRefusesAtOnceWhatCannotStartInTime(t *testing.T) {
	l := newLimiter(1000)
	fill(t, l)
	l.mu.Lock()
	l.mean = time.Duration(l.limit) * queueTarget / 2 // 2 slots free within the target
	l.queue = append(l.queue, &waiter{at: time.Now(), ready: make(chan struct{})})
	l.lastEmpty = time.Now().Add(-2 * queueInterval)
	l.mu.Unlock()
	out := make(chan admission, 1)
	enqueue(t, t.Context(), l, 1, out) // the second: it queues
	if waited, reason, err := l.acquire(t.Context(), time.Now()); reason != refusedQueueDelay || waited != 0 || err != nil {
		t.Errorf("beyond the room: %q after %s (%v), want %q at once", reason, waited, err, refusedQueueDelay)
	}
	if a := <-out; a.reason != refusedQueueDelay || a.waited < queueTarget {
		t.Errorf("within the room: %+v, want queued, then refused after %s", a, queueTarget)
	}
	if got, want := l.room(queueMaxWait), 2*int(queueMaxWait/queueTarget); got != want {
		t.Errorf("room in a fresh queue: %d, want %d", got, want)
	}
}

// A caller who leaves while queued leaves the queue.
func TestLimiterLetsACallerLeave(t *testing.T) {
	l := newLimiter(1000)
	fill(t, l)
	ctx, cancel := context.WithCancel(t.Context())
	out := make(chan admission, 1)
	enqueue(t, ctx, l, 1, out)
	cancel()
	if a := <-out; !errors.Is(a.err, context.Canceled) || a.reason != "" {
		t.Errorf("a caller who left: %+v, want context.Canceled", a)
	}
	if n := queued(l); n != 0 {
		t.Errorf("%d queued, want 0", n)
	}
}

// The limit shrinks while requests take more than twice the best recent
// window, within [minLimit, max]; it grows again once they are fast, but
// not while fewer than half of it are in use.
func TestLimiterFollowsTheTimeRequestsTake(t *testing.T) {
	l := newLimiter(256)
	now := time.Now()
	l.window = now
	window := func(took time.Duration, busy int) {
		now = now.Add(limitWindow)
		l.mostWorking = busy
		for range limitSamples {
			l.sample(now, took)
		}
	}
	window(time.Millisecond, initialLimit)
	if l.limit <= initialLimit {
		t.Fatalf("limit %.1f after a fast window with every slot used, want more than %d", l.limit, initialLimit)
	}
	for range 50 {
		window(10*time.Millisecond, int(l.limit))
	}
	if int(l.limit) != minLimit {
		t.Errorf("limit %.1f after windows ten times slower, want the least, %d", l.limit, minLimit)
	}
	for range 50 {
		window(time.Millisecond, 1)
	}
	if int(l.limit) != minLimit {
		t.Errorf("limit %.1f after windows that used 1 slot, want it unchanged, %d", l.limit, minLimit)
	}
	for range 200 {
		window(time.Millisecond, int(l.limit))
	}
	if l.limit < 100 {
		t.Errorf("limit %.1f after 20 s of fast windows with every slot used, want it grown", l.limit)
	}
	for range 1000 {
		window(time.Millisecond, int(l.limit))
	}
	if l.limit != 256 {
		t.Errorf("limit %.1f, want it held to max, 256", l.limit)
	}
}

// A call's budget counts from the request's arrival, not from the call: a
// request that waited 300 ms of a 1 s budget has 700 ms left. Without an
// arrival it is the whole budget, and an earlier deadline still holds.
func TestWithBudgetCountsFromArrival(t *testing.T) {
	now := time.Now()
	arrived := context.WithValue(t.Context(), admittedKey{}, admitted{arrived: now.Add(-300 * time.Millisecond)})
	for _, c := range []struct {
		name string
		ctx  context.Context
		want time.Time
	}{
		{"arrived 300 ms ago", arrived, now.Add(700 * time.Millisecond)},
		{"no arrival", t.Context(), now.Add(time.Second)},
	} {
		ctx, cancel := WithBudget(c.ctx, time.Second)
		deadline, _ := ctx.Deadline()
		cancel()
		if d := deadline.Sub(c.want); d < 0 || d > 50*time.Millisecond {
			t.Errorf("%s: deadline %s from now, want %s", c.name, deadline.Sub(now), c.want.Sub(now))
		}
	}
	parent, cancel := context.WithTimeout(arrived, 100*time.Millisecond)
	defer cancel()
	ctx, cancelBudget := WithBudget(parent, time.Second)
	defer cancelBudget()
	if deadline, _ := ctx.Deadline(); deadline.Sub(now) > 150*time.Millisecond {
		t.Errorf("under a 100 ms deadline: %s from now", deadline.Sub(now))
	}
}
