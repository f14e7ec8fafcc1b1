package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/micro/kubernetes/dev/stack"
	"github.com/micro/kubernetes/loadgen/load"
)

// The overload test's shape: the capacity measured closed-loop, then an
// open loop at each factor of it, every request answered or held back by
// the test's own bound of requests open.
const (
	overloadMeasure = 5 * time.Second
	overloadLength  = 10 * time.Second
	overloadOpen    = 2000
	referenceFactor = 0.8
	// capacityWorkers keep the web busy, and stay under the limiter's
	// least limit: a closed loop that it refused would measure refusals.
	capacityWorkers = 16
)

// The bounds are generous: on a shared machine the capacity measured
// varies by a third from run to run, and 0.8 of one run's can be all of
// another's. docs/reliability.md has the figures of several runs.
const (
	servedWithin   = time.Second // served p99 at 1.5x
	goodputAtLeast = 0.25        // at 1.5x, of the capacity
	// refusedWithin bounds most refusals at the server, by its own clock
	// (a bucket of server_queue_wait_seconds): refusedShare of them. At
	// 1.5x the refusals are a few hundred, and a few late ones weigh: a
	// CI run read 92.8% of 334 (100% of 55,345 at 3x).
	refusedWithin = "0.05"
	refusedShare  = 0.9
	// In the second after: the p99, and the share refused while what the
	// overload left behind drains.
	recoveredWithin = 250 * time.Millisecond
	recoveredShare  = 0.05
)

// Past its capacity, the web serves what it can and refuses the rest at
// once with 503 and Retry-After, against the processes `make run` starts,
// on a CPU of their own (see cpusApart). At 1.5 and 3 times its capacity
// every request it is sent is answered, served or refused, the refusals
// within 50 ms at the server, and the second after is as before but for
// a few refusals while the overload drains; at 1.5x it still serves a good
// part of its capacity. How much it serves at 3x is only reported: a
// refusal costs a third of a request served (the test reports both), so
// refusing twice the capacity takes most of the CPU (docs/reliability.md,
// Overload).
func TestOverloadKeepsServedRequestsFast(t *testing.T) {
	// Quiet: a log line a request, copied into the test's log, would be
	// work for the load generator's CPU and a flood in its output.
	root, err := stack.Root(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s := startOptions(t, stack.Options{Ports: freePorts(t, 1), ConfigFile: filepath.Join(root, stack.ConfigFile), Out: io.Discard})
	url := s.Ports.URL() + "/greeter?name=overload"
	do := load.Get(&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: overloadOpen}}, url)
	// The application is every process `make run` starts: NATS and the
	// stats service work for every greeting too. Left free to run on the
	// load generator's CPU, they held its requests back: the served p99 at
	// 1.5x passed a second while the web refused within 50 ms.
	var pids []int
	for _, name := range s.Names() {
		pids = append(pids, s.Pid(name))
	}
	cpusApart(t, pids...)

	capacity := load.Run(t.Context(), load.Options{Workers: capacityWorkers, Duration: overloadMeasure}, do).Throughput
	// open runs an open loop at factor times the capacity, and returns
	// what the application's processes spent on it.
	open := func(factor float64, d time.Duration) (load.Result, time.Duration) {
		before := cpuTime(t, pids)
		r := load.Run(t.Context(), load.Options{Rate: factor * capacity, Workers: overloadOpen, Duration: d}, do)
		return r, cpuTime(t, pids) - before
	}
	reference, cpu := open(referenceFactor, overloadLength)
	perServed := cpu / time.Duration(max(reference.Requests-reference.Errors, 1))
	t.Logf("capacity %.0f req/s; at %.1fx: %s; the application's CPU per request %s", capacity, referenceFactor, reference, perServed)

	web := s.Ports.MetricsURL("web")
	for _, factor := range []float64{1.5, 3} {
		refused := metric(t, web, "server_queue_wait_seconds_count", `outcome="refused"`)
		fast := metric(t, web, "server_queue_wait_seconds_bucket", `outcome="refused"`, `le="`+refusedWithin+`"`)
		r, cpu := open(factor, overloadLength)
		refused = metric(t, web, "server_queue_wait_seconds_count", `outcome="refused"`) - refused
		fast = metric(t, web, "server_queue_wait_seconds_bucket", `outcome="refused"`, `le="`+refusedWithin+`"`) - fast
		perRefusal := (cpu - time.Duration(r.Requests-r.Errors)*perServed) / time.Duration(max(r.Refused, 1))
		after, _ := open(0.5, time.Second)
		goodput := r.Throughput / capacity
		cost := "less than a served request's cost fell" // served requests cost less when the CPU is busy
		if perRefusal > 0 {
			cost = fmt.Sprintf("%s, %.0f%% of a request served", perRefusal, 100*float64(perRefusal)/float64(perServed))
		}
		t.Logf("at %.1fx: %s; goodput %.2f; at the web, %.1f%% of %.0f refusals within %s s; "+
			"the application's CPU %s, per refusal about %s; the second after: %s",
			factor, r, goodput, 100*fast/max(refused, 1), refused, refusedWithin, cpu.Round(time.Millisecond), cost, after)
		held := r.ErrorKinds[load.ErrNotSent]
		if unanswered := r.Errors - r.Refused - held; unanswered > 0 {
			t.Errorf("at %.1fx: %d requests failed other than refused: %v", factor, unanswered, r.ErrorKinds)
		}
		if fast < refused*refusedShare {
			t.Errorf("at %.1fx: %.0f of %.0f refusals took over %s s at the web, want %.0f%% within", factor, refused-fast, refused, refusedWithin, 100*refusedShare)
		}
		if after.Errors > after.Refused || float64(after.Refused) > recoveredShare*float64(after.Requests) || after.P99 > recoveredWithin {
			t.Errorf("the second after %.1fx: %d errors %v, p99 %s; want no failures, at most %.0f%% refused, p99 within %s",
				factor, after.Errors, after.ErrorKinds, after.P99, 100*recoveredShare, recoveredWithin)
		}
		if factor > 2 {
			continue
		}
		if r.P99 > servedWithin {
			t.Errorf("at %.1fx: served p99 %s, want within %s", factor, r.P99, servedWithin)
		}
		if goodput < goodputAtLeast {
			t.Errorf("at %.1fx: served %.0f req/s, %.2f of the capacity; want at least %.2f", factor, r.Throughput, goodput, goodputAtLeast)
		}
	}
	greeter := s.Ports.MetricsURL("greeter")
	t.Logf("the greeter's events: %.0f published, %.0f waiting, %.0f dropped", metric(t, greeter, "events_published_total"),
		metric(t, greeter, "events_buffered"), metric(t, greeter, "events_dropped_total"))
}

// cpuTime is the CPU time the processes pids have used, user and system.
func cpuTime(t *testing.T, pids []int) time.Duration {
	t.Helper()
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		// utime and stime are the 14th and 15th fields, after the command
		// in parentheses; in clock ticks, 100 a second.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		for _, v := range f[11:13] {
			ticks, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			total += time.Duration(ticks) * 10 * time.Millisecond
		}
	}
	return total
}
