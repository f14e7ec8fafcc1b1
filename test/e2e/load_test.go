package e2e

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	loadRate     = 200 // requests per second, far below what the machine holds
	loadDuration = 60 * time.Second
	loadWindow   = 10 * time.Second // compared: the first and the last
)

// sample is one reading of a process's resident memory, threads and
// goroutines.
type sample struct {
	at         time.Duration
	rss        int // KiB
	threads    int
	goroutines int
}

// readProc reads VmRSS and Threads from /proc/<pid>/status.
func readProc(pid int) (sample, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return sample{}, err
	}
	var s sample
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			s.rss, _ = strconv.Atoi(f[1])
		case "Threads:":
			s.threads, _ = strconv.Atoi(f[1])
		}
	}
	return s, nil
}

// meanIn is the mean sample taken between from and to.
func meanIn(samples []sample, from, to time.Duration) (rss, threads, goroutines float64) {
	n := 0.0
	for _, s := range samples {
		if s.at >= from && s.at < to {
			rss += float64(s.rss)
			threads += float64(s.threads)
			goroutines += float64(s.goroutines)
			n++
		}
	}
	if n == 0 {
		return 0, 0, 0
	}
	return rss / n, threads / n, goroutines / n
}

// A steady rate for a minute: no error, and memory and threads of the web
// frontend and the greeter as high at the end as at the start (no leak).
func TestSteadyLoad(t *testing.T) {
	s := startStack(t)
	url := s.Ports.URL() + "/greeter?name=steady"
	client := &http.Client{Timeout: 5 * time.Second}

	var mu sync.Mutex
	var latencies []time.Duration
	failures := map[string]int{}
	samples := map[string][]sample{}

	start := time.Now()
	// Every 10 ms, send what is due since the start: the rate holds even when
	// a tick comes late.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	sent := 0
	second := time.NewTicker(time.Second)
	defer second.Stop()
	var wg sync.WaitGroup
	jobs := make(chan struct{}, loadRate)
	for range 16 {
		wg.Go(func() {
			for range jobs {
				begin := time.Now()
				rsp, err := client.Get(url)
				took := time.Since(begin)
				mu.Lock()
				switch {
				case err != nil:
					failures[err.Error()]++
				case rsp.StatusCode != http.StatusOK:
					failures[rsp.Status]++
				default:
					latencies = append(latencies, took)
				}
				mu.Unlock()
				if err == nil {
					rsp.Body.Close()
				}
			}
		})
	}
	for time.Since(start) < loadDuration {
		select {
		case <-tick.C:
			for due := int(time.Since(start).Seconds() * loadRate); sent < due; sent++ {
				select {
				case jobs <- struct{}{}:
				default:
					mu.Lock()
					failures["the rate was not held: no worker free"]++
					mu.Unlock()
				}
			}
		case <-second.C:
			for _, name := range []string{"web", "greeter"} {
				sm, err := readProc(s.Pid(name))
				if err != nil {
					t.Fatalf("reading %s's memory: %v", name, err)
				}
				sm.at = time.Since(start)
				sm.goroutines = int(metric(t, s.Ports.MetricsURL(name), "go_goroutines"))
				samples[name] = append(samples[name], sm)
			}
		}
	}
	close(jobs)
	wg.Wait()

	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[int(p*float64(len(latencies)-1))].Round(10 * time.Microsecond)
	}
	t.Logf("%d requests at %d/s for %s: %d ok, failures %v; latency p50 %s p99 %s max %s",
		len(latencies)+sum(failures), loadRate, loadDuration, len(latencies), failures, pct(0.5), pct(0.99), pct(1))
	if len(failures) > 0 {
		t.Errorf("failures under steady load: %v", failures)
	}
	if want := int(loadDuration.Seconds()) * loadRate * 99 / 100; len(latencies) < want {
		t.Errorf("%d requests succeeded, want at least %d", len(latencies), want)
	}
	for name, ss := range samples {
		rss0, th0, g0 := meanIn(ss, 2*time.Second, 2*time.Second+loadWindow) // after warm-up
		rss1, th1, g1 := meanIn(ss, loadDuration-loadWindow, loadDuration)
		t.Logf("%s: RSS %.1f MiB -> %.1f MiB, goroutines %.1f -> %.1f, threads %.1f -> %.1f (first and last %s)",
			name, rss0/1024, rss1/1024, g0, g1, th0, th1, loadWindow)
		if g1 > g0*1.2+10 {
			t.Errorf("%s: goroutines grew from %.1f to %.1f under a steady load", name, g0, g1)
		}
		if rss1 > rss0*1.2+4096 {
			t.Errorf("%s: RSS grew from %.1f to %.1f MiB under a steady load", name, rss0/1024, rss1/1024)
		}
		if th1 > th0+4 {
			t.Errorf("%s: threads grew from %.1f to %.1f under a steady load", name, th0, th1)
		}
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
