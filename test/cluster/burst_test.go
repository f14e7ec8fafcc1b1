package cluster_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

const (
	// burstFactor times the measured capacity is offered, for burstLength.
	burstFactor = 3
	burstLength = 20 * time.Second
	// burstClients bounds the requests the test itself has open at once:
	// the burst is bounded, and the machine runs the cluster too.
	burstClients = 2000
	// recoveryBound: every request sent this long after the burst must
	// succeed.
	recoveryBound = 2 * time.Second
)

// TestBurst offers the application three times what it can serve for 20 s:
// no container may restart or be OOM-killed, no process may pass its
// container's memory limit, what is refused is refused at once (503 with
// Retry-After), and 2 s after the burst every request succeeds again. Not
// in parallel: it takes the whole machine, and would skew what others time.
func TestBurst(t *testing.T) {
	const ns = "burst"
	deploy(t, ns, nil)
	if _, err := eventually(t.Context(), time.Minute, func(ctx context.Context) error { return allReady(ctx, ns) }); err != nil {
		t.Fatal(err)
	}
	url := serviceURL("web", ns) + "/greeter?name=Burst"
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: client.Transport.(*http.Transport).DialContext, MaxIdleConnsPerHost: burstClients,
	}}
	before := restarts(t, ns)

	capacity := saturate(t, c, url, 64, 5*time.Second)
	rate := burstFactor * capacity
	t.Logf("capacity through the web Service: %.0f req/s; offering %.0f req/s for %s", capacity, rate, burstLength)
	results := offer(t.Context(), c, url, rate, burstLength)
	end := time.Now()

	// Afterwards: a steady 50 requests a second for 5 s.
	after := offer(t.Context(), c, url, 50, 5*time.Second)
	var late []string
	firstOK := time.Duration(-1)
	for _, r := range after {
		if r.status == "200" && firstOK < 0 {
			firstOK = r.at.Sub(end)
		}
		if r.status != "200" && r.at.Sub(end) >= recoveryBound {
			late = append(late, fmt.Sprintf("%s at +%s", r.status, r.at.Sub(end).Round(time.Millisecond)))
		}
	}
	if len(late) > 0 {
		t.Errorf("%d requests failed %s or more after the burst: %v", len(late), recoveryBound, late)
	}

	var served, refused []time.Duration
	held, other := 0, map[string]int{}
	for _, r := range results {
		switch {
		case r.status == "200":
			served = append(served, r.took)
		case r.status == "503":
			refused = append(refused, r.took)
		case r.status == heldBack:
			held++
		default:
			// An error's text names the URL: keep what differs.
			_, cause, found := strings.Cut(r.status, "\": ")
			if !found {
				cause = r.status
			}
			other[cause]++
		}
	}
	slices.Sort(served)
	slices.Sort(refused)
	sent := len(results) - held
	t.Logf("burst: offered %d requests (%.0f/s), %d held back by the test's own bound of %d open; of the %d sent: "+
		"served %d (%.0f%%; p50 %s, p99 %s), refused with 503 %d (%.0f%%; p50 %s, p99 %s), failed %v; after the burst, 200 again after %s",
		len(results), float64(len(results))/burstLength.Seconds(), held, burstClients, sent,
		len(served), percent(len(served), sent), quantile(served, 0.5), quantile(served, 0.99),
		len(refused), percent(len(refused), sent), quantile(refused, 0.5), quantile(refused, 0.99), other, firstOK.Round(time.Millisecond))
	if len(served) == 0 {
		t.Error("the burst served nothing")
	}

	if got := restarts(t, ns); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("containers restarted: %v, then %v", before, got)
	}
	list, err := pods(t.Context(), ns, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list {
		for _, cs := range p.Status.ContainerStatuses {
			if term := cs.LastTerminationState.Terminated; term != nil {
				t.Errorf("%s/%s terminated: %s", p.Name, cs.Name, term.Reason)
			}
		}
		for _, ctr := range p.Spec.Containers {
			limit := ctr.Resources.Limits.Memory().Value()
			peak := peakRSS(t, p, ctr.Name)
			t.Logf("%s/%s: peak RSS %.1f MiB of a %.0f MiB limit", p.Name, ctr.Name, float64(peak)/(1<<20), float64(limit)/(1<<20))
			if peak >= limit {
				t.Errorf("%s/%s reached %d bytes, its limit is %d", p.Name, ctr.Name, peak, limit)
			}
		}
	}
}

// saturate measures how many requests a second succeed with workers
// sending back to back.
func saturate(t *testing.T, c *http.Client, url string, workers int, d time.Duration) float64 {
	t.Helper()
	var ok atomic.Int64
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				if status(ctx, c, url) == "200" {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return float64(ok.Load()) / d.Seconds()
}

// offer sends GET url at rate a second for d, whatever the answers take
// (an open loop, as users arrive), with at most burstClients open at once.
func offer(ctx context.Context, c *http.Client, url string, rate float64, d time.Duration) []result {
	var (
		mu      sync.Mutex
		results []result
		wg      sync.WaitGroup
	)
	open := make(chan struct{}, burstClients)
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for sent := 0; time.Since(start) < d; {
		<-tick.C
		for due := int(rate * time.Since(start).Seconds()); sent < due; sent++ {
			select {
			case open <- struct{}{}:
			default:
				mu.Lock()
				results = append(results, result{at: time.Now(), status: heldBack})
				mu.Unlock()
				continue
			}
			wg.Go(func() {
				defer func() { <-open }()
				at := time.Now()
				s := status(ctx, c, url)
				mu.Lock()
				results = append(results, result{at: at, status: s, took: time.Since(at)})
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	return results
}

// status is the HTTP status of GET url as a string, or the error.
func status(ctx context.Context, c *http.Client, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	rsp, err := c.Do(req)
	if err != nil {
		return err.Error()
	}
	rsp.Body.Close()
	if rsp.StatusCode == http.StatusServiceUnavailable && rsp.Header.Get("Retry-After") == "" {
		return "503 without Retry-After"
	}
	return strconv.Itoa(rsp.StatusCode)
}

// heldBack marks a request the test did not send: burstClients were open.
const heldBack = "held back"

func percent(n, of int) float64 { return 100 * float64(n) / float64(max(of, 1)) }

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))].Round(time.Millisecond)
}

// peakRSS is the most memory the main process of a pod's container has held
// (VmHWM): the tests run in the cluster's PID namespace, where it is seen.
func peakRSS(t *testing.T, p corev1.Pod, name string) int64 {
	t.Helper()
	var id string
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == name {
			_, id, _ = strings.Cut(cs.ContainerID, "://")
		}
	}
	files, err := filepath.Glob("/proc/[0-9]*/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || id == "" || !strings.Contains(string(b), id) {
			continue
		}
		st, err := os.ReadFile(filepath.Join(filepath.Dir(f), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return kb << 10
			}
		}
	}
	t.Fatalf("no process of %s/%s", p.Name, name)
	return 0
}
