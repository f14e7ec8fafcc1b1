// Package load sends requests at a fixed rate or as fast as a number of
// workers can, for a bounded time or count, and measures them.
package load

import (
	"context"
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
}

func (r Result) String() string {
	return fmt.Sprintf("%d requests in %s: %.0f/s ok, %d errors %v; latency p50 %s p90 %s p99 %s max %s",
		r.Requests, r.Elapsed.Round(time.Millisecond), r.Throughput, r.Errors, r.ErrorKinds,
		round(r.P50), round(r.P90), round(r.P99), round(r.Max))
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
				if err != nil {
					kinds[err.Error()]++
				} else {
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
				kinds["rate not held: every worker busy"]++
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
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		at := func(p float64) time.Duration { return latencies[int(p*float64(n-1))] }
		r.P50, r.P90, r.P99, r.Max = at(0.5), at(0.9), at(0.99), latencies[n-1]
		r.Throughput = float64(n) / elapsed.Seconds()
	}
	return r
}
