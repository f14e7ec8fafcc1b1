package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The events' figures (issue 30): greetings through the web at eventsRate
// until eventsTotal are answered, while the consumers and the broker are
// disrupted.
const (
	eventsRate  = 200
	eventsTotal = 10_000
	// maxGreetAttempts bounds the attempts at one greeting refused with 503.
	maxGreetAttempts = 5
)

// retryAfter is how long a's Retry-After asks to wait, a second if it says
// nothing readable.
func retryAfter(a answer) time.Duration {
	if s, err := strconv.Atoi(a.header.Get("Retry-After")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return time.Second
}

// TestEvents deploys the application (with the API gateway, to read the
// count without greeting) and greets one name through the web at
// eventsRate until eventsTotal greetings are answered 200, while one stats
// pod is killed twice, the stats are rolled, and the NATS pod is restarted
// once. The count must come to exactly eventsTotal: no event lost (the
// greeter's buffer and retries, JetStream's redelivery) and none counted
// twice (the stats' idempotence by event id). A greeting refused with 503
// (the web or the greeter shedding load: nothing was published) is sent
// again after its Retry-After, as a client does; the refusals are
// reported, and any other answer fails the test. Not in parallel: its
// rate and lags are measured on a machine the other load tests do not
// share, and its disruptions do not skew theirs.
func TestEvents(t *testing.T) {
	const ns = "events"
	deploy(t, ns, []string{"api"})
	if _, err := eventually(t.Context(), 2*time.Minute, func(ctx context.Context) error { return allReady(ctx, ns) }); err != nil {
		t.Fatal(err)
	}
	name := "Events-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	greet := serviceURL("web", ns) + "/greeter?name=" + name

	var mu sync.Mutex
	statuses := map[string]int{} // each greeting's last answer
	var refusals []string        // when each 503 came, and what it said
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Go(func() {
		// Each at its own time from t0: a late one does not delay the rest.
		for i := range eventsTotal {
			time.Sleep(time.Until(t0.Add(time.Duration(i) * time.Second / eventsRate)))
			wg.Go(func() {
				status := ""
				for attempt := 1; ; attempt++ {
					a, err := get(context.WithoutCancel(t.Context()), greet)
					if err != nil {
						status = err.Error()
						break
					}
					status = strconv.Itoa(a.status)
					if a.status != 503 || attempt == maxGreetAttempts {
						break
					}
					mu.Lock()
					refusals = append(refusals, fmt.Sprintf("+%s %s", time.Since(t0).Round(time.Millisecond), a.body))
					mu.Unlock()
					time.Sleep(retryAfter(a))
				}
				mu.Lock()
				statuses[status]++
				mu.Unlock()
			})
		}
	})

	at := func(d time.Duration) { time.Sleep(time.Until(t0.Add(d))) }
	// The lag undisturbed: what the stats pods measured before the first
	// kill.
	at(5 * time.Second)
	calm := lagOf(t, ns)
	t.Logf("lag, publish to counted, at %d/s undisturbed (the first %.0f events): p50 %s, p99 %s",
		eventsRate, calm.count(), calm.quantile(0.5), calm.quantile(0.99))
	for _, d := range []time.Duration{5 * time.Second, 15 * time.Second} {
		at(d)
		stats := livePods(t, ns, "stats")
		signalContainer(t, stats[0], "stats", syscall.SIGKILL)
	}
	at(22 * time.Second)
	kubectl(t, "rollout", "restart", "deployment/stats", "--namespace="+ns)
	kubectl(t, "rollout", "status", "deployment/stats", "--namespace="+ns, "--timeout=3m")
	t.Logf("stats rolled by +%s", time.Since(t0).Round(time.Second))
	at(max(35*time.Second, time.Since(t0)+time.Second))
	restartedAt := time.Since(t0)
	if err := env.cluster.Client.CoreV1().Pods(ns).Delete(t.Context(), "nats-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if took, err := eventually(t.Context(), 2*time.Minute, func(ctx context.Context) error { return allReady(ctx, ns) }); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("NATS restarted at +%s, every pod Ready again %s later", restartedAt.Round(time.Second), took.Round(100*time.Millisecond))
	}
	wg.Wait()
	sent := time.Since(t0)
	t.Logf("%d greetings in %s (%.0f/s): %v; %d refused with 503 first, and sent again", eventsTotal, sent.Round(time.Second),
		eventsTotal/sent.Seconds(), statuses, len(refusals))
	slices.Sort(refusals)
	if len(refusals) > 0 {
		t.Logf("the refusals (the first 10): %s", strings.Join(refusals[:min(10, len(refusals))], "; "))
	}
	if statuses["200"] != eventsTotal {
		t.Fatalf("not every greeting was answered 200 (in %d attempts): %v", maxGreetAttempts, statuses)
	}

	var count uint64
	took, err := eventually(t.Context(), 2*time.Minute, func(ctx context.Context) error {
		var err error
		if count, err = countOf(ctx, ns, name); err != nil {
			return err
		}
		if count < eventsTotal {
			return fmt.Errorf("counted %d", count)
		}
		return nil
	})
	t.Logf("the count reached %d %s after the last greeting was answered", count, took.Round(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	// Anything counted twice would show by now: the ack wait has passed.
	time.Sleep(3 * time.Second)
	if count, err = countOf(t.Context(), ns, name); err != nil || count != eventsTotal {
		t.Fatalf("the count is %d (%v), want exactly %d", count, err, eventsTotal)
	}

	lag := lagOf(t, ns)
	var redelivered float64
	for _, p := range livePods(t, ns, "stats") {
		n, err := metric(t.Context(), p, "events_redelivered_total", "")
		if err != nil {
			t.Fatal(err)
		}
		redelivered += n
	}
	t.Logf("lag, publish to counted, at %d/s, of the %.0f events the last stats pods counted (after the roll, through the NATS restart): p50 %s, p99 %s; %v redelivered to them",
		eventsRate, lag.count(), lag.quantile(0.5), lag.quantile(0.99), redelivered)
	for _, p := range livePods(t, ns, "greeter") {
		for _, series := range []string{"events_published_total", "events_publish_retries_total", "events_dropped_total"} {
			n, err := metric(t.Context(), p, series, "")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %s %v", p.Name, series, n)
			if series == "events_dropped_total" && n != 0 {
				t.Errorf("%s dropped %v events", p.Name, n)
			}
		}
	}
}

// lagOf is the lag histogram of the stats pods running in ns.
func lagOf(t *testing.T, ns string) histogram {
	t.Helper()
	var lag histogram
	for _, p := range livePods(t, ns, "stats") {
		a, err := getFromNode(t.Context(), p.Spec.NodeName, metricsURL(p))
		if err != nil {
			t.Fatal(err)
		}
		lag.add(a.body, "events_lag_seconds")
	}
	return lag
}

// countOf asks the stats for a name's count through the API gateway: a
// read that greets no one.
func countOf(ctx context.Context, ns, name string) (uint64, error) {
	body, err := json.Marshal(map[string]string{"name": name})
	if err != nil {
		return 0, err
	}
	a, err := post(ctx, serviceURL("api", ns)+"/stats/Stats.Get", string(body))
	if err != nil {
		return 0, err
	}
	if a.status != 200 {
		return 0, fmt.Errorf("Stats.Get: %d %s", a.status, a.body)
	}
	// A uint64 may come as a JSON string (protojson) or number; a count of
	// 0 may be left out.
	var rsp struct {
		Count any `json:"count"`
	}
	if err := json.Unmarshal([]byte(a.body), &rsp); err != nil {
		return 0, fmt.Errorf("Stats.Get: %s: %w", a.body, err)
	}
	switch c := rsp.Count.(type) {
	case nil:
		return 0, nil
	case string:
		return strconv.ParseUint(c, 10, 64)
	case float64:
		return uint64(c), nil
	}
	return 0, fmt.Errorf("Stats.Get: a count of %s", a.body)
}

// histogram is a Prometheus histogram summed over pods: cumulative counts
// by upper bound.
type histogram map[float64]float64

func (h *histogram) add(exposition, name string) {
	if *h == nil {
		*h = histogram{}
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `_bucket\{[^}]*le="([^"]+)"[^}]*\} (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(exposition, -1) {
		le, err1 := strconv.ParseFloat(m[1], 64)
		n, err2 := strconv.ParseFloat(m[2], 64)
		if err1 == nil && err2 == nil {
			(*h)[le] += n
		}
	}
}

func (h histogram) count() float64 { return h[math.Inf(1)] }

// quantile interpolates within the bucket that holds q, as Prometheus'
// histogram_quantile does.
func (h histogram) quantile(q float64) time.Duration {
	bounds := slices.Sorted(func(yield func(float64) bool) {
		for le := range h {
			if !yield(le) {
				return
			}
		}
	})
	total := h.count()
	if total == 0 {
		return 0
	}
	rank, lower, below := q*total, 0.0, 0.0
	for _, le := range bounds {
		if h[le] >= rank {
			if math.IsInf(le, 1) {
				return time.Duration(lower * float64(time.Second))
			}
			frac := (rank - below) / max(h[le]-below, 1)
			return time.Duration((lower + (le-lower)*frac) * float64(time.Second)).Round(100 * time.Microsecond)
		}
		lower, below = le, h[le]
	}
	return 0
}
