// Package load sends requests at a fixed rate or as fast as a number of
// workers can, for a bounded time or count, and measures them.
package load

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Options bound a run.
type Options struct {
	// Rate is requests per second; 0 sends as fast as Workers allow.
	Rate float64
	// Workers is how many requests may be in flight at once.
	Workers int
	// Duration ends the run after this long; 0: only Requests or ctx end it.
	Duration time.Duration
	// Requests ends the run after this many; 0: no limit.
	Requests int
}

// ErrRefused marks a request the target refused because it is overloaded
// (HTTP 503, gRPC RESOURCE_EXHAUSTED): an answer, timed apart from the
// requests served.
var ErrRefused = errors.New("refused: overloaded")

// ErrNotSent is the error kind of a request the run did not send: at the
// rate, every worker was busy.
const ErrNotSent = "rate not held: every worker busy"

// Result is what a run measured.
type Result struct {
	Requests   int            `json:"requests"`
	Errors     int            `json:"errors"`
	ErrorKinds map[string]int `json:"error_kinds,omitempty"`
	Elapsed    time.Duration  `json:"elapsed_ns"`
	// Throughput is successful requests per second.
	Throughput float64       `json:"throughput"`
	P50        time.Duration `json:"p50_ns"`
	P90        time.Duration `json:"p90_ns"`
	P99        time.Duration `json:"p99_ns"`
	Max        time.Duration `json:"max_ns"`
	// Refused counts the errors that are ErrRefused, and times them.
	Refused    int           `json:"refused"`
	RefusedP50 time.Duration `json:"refused_p50_ns"`
	RefusedP99 time.Duration `json:"refused_p99_ns"`
}

func (r Result) String() string {
	s := fmt.Sprintf("%d requests in %s: %.0f/s ok, %d errors %v; latency p50 %s p90 %s p99 %s max %s",
		r.Requests, r.Elapsed.Round(time.Millisecond), r.Throughput, r.Errors, r.ErrorKinds,
		round(r.P50), round(r.P90), round(r.P99), round(r.Max))
	if r.Refused > 0 {
		s += fmt.Sprintf("; %d of the errors refused (overloaded) in p50 %s p99 %s", r.Refused, round(r.RefusedP50), round(r.RefusedP99))
	}
	return s
}

func round(d time.Duration) time.Duration { return d.Round(time.Microsecond) }

// Run calls do until the run's bounds end it, and measures every call.
func Run(ctx context.Context, o Options, do func(context.Context) error) Result {
	if o.Workers < 1 {
		o.Workers = 1
	}
	// The bounds stop sending; requests in flight then finish under ctx.
	requestCtx := ctx
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}

	tokens := make(chan struct{}, o.Workers)
	var (
		mu        sync.Mutex
		latencies []time.Duration
		refused   []time.Duration
		kinds     = map[string]int{}
		sent      int
	)
	start := time.Now()
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Go(func() {
			for range tokens {
				begin := time.Now()
				err := do(requestCtx)
				took := time.Since(begin)
				mu.Lock()
				switch {
				case errors.Is(err, ErrRefused):
					refused = append(refused, took)
					fallthrough
				case err != nil:
					kinds[err.Error()]++
				default:
					latencies = append(latencies, took)
				}
				mu.Unlock()
			}
		})
	}

	// The dispatcher: as fast as workers take tokens, or at the rate: what is
	// due since the start, so that a late tick does not lower the rate.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
dispatch:
	for o.Requests == 0 || sent < o.Requests {
		if o.Rate == 0 {
			select {
			case tokens <- struct{}{}:
				sent++
			case <-ctx.Done():
				break dispatch
			}
			continue
		}
		due := int(time.Since(start).Seconds() * o.Rate)
		if o.Requests > 0 {
			due = min(due, o.Requests)
		}
		for ; sent < due; sent++ {
			select {
			case tokens <- struct{}{}:
			default:
				mu.Lock()
				kinds[ErrNotSent]++
				mu.Unlock()
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			break dispatch
		}
	}
	close(tokens)
	wg.Wait()
	elapsed := time.Since(start)

	r := Result{Requests: sent, Elapsed: elapsed, ErrorKinds: kinds}
	for _, n := range kinds {
		r.Errors += n
	}
	if len(kinds) == 0 {
		r.ErrorKinds = nil
	}
	if n := len(latencies); n > 0 {
		r.P50, r.P90, r.P99, r.Max = quantile(latencies, 0.5), quantile(latencies, 0.9), quantile(latencies, 0.99), quantile(latencies, 1)
		r.Throughput = float64(n) / elapsed.Seconds()
	}
	r.Refused, r.RefusedP50, r.RefusedP99 = len(refused), quantile(refused, 0.5), quantile(refused, 0.99)
	return r
}

// quantile sorts d and returns its q quantile; 0 when it is empty.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[int(q*float64(len(d)-1))]
}
