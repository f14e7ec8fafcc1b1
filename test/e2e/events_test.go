package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go-micro.dev/v6/client"

	"github.com/micro/kubernetes/dev/stack"
	"github.com/micro/kubernetes/pkg/k8s"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
	statsv1 "github.com/micro/kubernetes/proto/stats/v1"
)

// countOf asks the stats service for a name's count, over gRPC.
func countOf(t *testing.T, s *stack.Stack, name string) (uint64, error) {
	t.Helper()
	stats := statsv1.NewStatsService(statsv1.ServiceName, k8s.NewClient())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	rsp, err := stats.Get(ctx, &statsv1.GetRequest{Name: name}, client.WithAddress(s.Ports.ServiceAddress(statsv1.ServiceName)))
	return rsp.GetCount(), err
}

// waitCount waits until the name's count is want, and fails if it is
// more, or still less after limit.
func waitCount(t *testing.T, s *stack.Stack, name string, want uint64, limit time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		got, err := countOf(t, s, name)
		switch {
		case err == nil && got == want:
			t.Logf("%s counted %d times, %s after the last greeting", name, got, time.Since(start).Round(time.Millisecond))
			return
		case err == nil && got > want:
			t.Fatalf("%s counted %d times, want %d: an event counted twice", name, got, want)
		case time.Since(start) > limit:
			t.Fatalf("%s counted %d times (%v) after %s, want %d", name, got, err, limit, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// greetMany greets name n times through the web's JSON API, with workers
// at once, and fails on any answer but 200.
func greetMany(t *testing.T, s *stack.Stack, name string, n, workers int) {
	t.Helper()
	u := s.Ports.URL() + "/greeter?name=" + url.QueryEscape(name)
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := map[int]int{}
	jobs := make(chan int)
	for range workers {
		wg.Go(func() {
			for range jobs {
				if a := get(t, "GET", u); a.status != 200 {
					mu.Lock()
					failed[a.status]++
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("greeting %s %d times: answers other than 200, by status: %v", name, n, failed)
	}
}

func TestEventsCountTheGreetings(t *testing.T) {
	s := startStack(t)
	greetMany(t, s, "Ada", 40, 4)
	waitCount(t, s, "Ada", 40, 10*time.Second)

	// The page and the JSON API show the count, once it has caught up.
	a := get(t, "GET", s.Ports.URL()+"/greeter?name=Ada")
	var body struct {
		Message string  `json:"message"`
		Greeted *uint64 `json:"greeted"`
	}
	if err := json.Unmarshal([]byte(a.body), &body); err != nil || a.status != 200 || body.Greeted == nil || *body.Greeted < 40 {
		t.Fatalf("GET /greeter: %d %s, want the greeting and a count of at least 40", a.status, a.body)
	}
	waitCount(t, s, "Ada", 41, 10*time.Second)
	// The page greets Ada a 42nd time; that event may be counted before
	// the count is read, or not yet.
	page := get(t, "GET", s.Ports.URL()+"/?name=Ada")
	if !strings.Contains(page.body, "Ada has been greeted 41 times") && !strings.Contains(page.body, "Ada has been greeted 42 times") {
		t.Fatalf("the page does not say the count, 41 or 42:\n%s", page.body)
	}
	if n, err := countOf(t, s, "never greeted"); err != nil || n != 0 {
		t.Fatalf("a name never greeted: %d, %v; want 0", n, err)
	}
	if _, err := countOf(t, s, ""); err == nil {
		t.Fatal("an empty name was answered, want InvalidArgument")
	}

	greeter, stats := s.Ports.MetricsURL(greeterv1.ServiceName), s.Ports.MetricsURL(statsv1.ServiceName)
	if got := metric(t, greeter, "events_published_total"); got < 42 {
		t.Errorf("the greeter published %v events, want at least 42", got)
	}
	if got := metric(t, stats, "events_consumed_total", `result="ok"`); got < 42 {
		t.Errorf("the stats consumed %v events, want at least 42", got)
	}
	if got := metric(t, stats, "events_lag_seconds_count"); got < 42 {
		t.Errorf("the stats measured the lag of %v events, want at least 42", got)
	}
}

// A consumer stopped, or killed with events in hand, loses none: what it
// had not acknowledged comes again, and what it had counted already is not
// counted twice.
func TestEventsSurviveAConsumerRestart(t *testing.T) {
	s := startStack(t)
	greetMany(t, s, "Grace", 50, 4)
	if err := s.Down(statsv1.ServiceName); err != nil {
		t.Fatal(err)
	}
	greetMany(t, s, "Grace", 50, 4) // counted once the stats are back
	if err := s.Up(t.Context(), statsv1.ServiceName); err != nil {
		t.Fatal(err)
	}
	waitCount(t, s, "Grace", 100, 15*time.Second)

	// Killed while it counts: its events come again after the ack wait.
	done := make(chan struct{})
	go func() {
		defer close(done)
		greetMany(t, s, "Grace", 300, 8)
	}()
	time.Sleep(200 * time.Millisecond)
	if err := s.Restart(statsv1.ServiceName); err != nil {
		t.Fatal(err)
	}
	<-done
	waitCount(t, s, "Grace", 400, k8s.EventAckWait+15*time.Second)
}

// NATS away: every greeting is still answered, at once, and its event is
// published once NATS is back.
func TestEventsWaitOutNATSAway(t *testing.T) {
	s := startStack(t)
	greetMany(t, s, "Linus", 10, 2)
	waitCount(t, s, "Linus", 10, 10*time.Second)
	if err := s.Down(stack.NATSName); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	greetMany(t, s, "Linus", 100, 4)
	t.Logf("100 greetings with NATS away, all 200, in %s", time.Since(start).Round(time.Millisecond))
	greeter := s.Ports.MetricsURL(greeterv1.ServiceName)
	if got := metric(t, greeter, "events_buffered"); got == 0 {
		t.Error("the greeter buffers no event with NATS away")
	}
	if err := s.Up(t.Context(), stack.NATSName); err != nil {
		t.Fatal(err)
	}
	waitCount(t, s, "Linus", 110, 20*time.Second)
	if got := metric(t, greeter, "events_dropped_total"); got != 0 {
		t.Errorf("the greeter dropped %v events", got)
	}
}

// Two replicas of the stats count one name at once, each event once: the
// stack's and one more, consuming as one.
func TestEventsCountedOnceByTwoReplicas(t *testing.T) {
	s := startStack(t)
	bin, env := s.Binary(statsv1.ServiceName)
	metrics := "127.0.0.1:" + strconv.Itoa(freePort(t))
	second := exec.Command(bin, "--server_address=127.0.0.1:"+strconv.Itoa(freePort(t)), "--metrics_address="+metrics)
	second.Env = env
	second.Stdout, second.Stderr = testWriter{t}, testWriter{t}
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = second.Wait(); close(done) }()
	t.Cleanup(func() { stack.StopProcess(second, done) })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := stack.WaitServing(ctx, "http://"+metrics+"/metrics", done); err != nil {
		t.Fatal(err)
	}

	greetMany(t, s, "Barbara", 400, 8)
	waitCount(t, s, "Barbara", 400, 15*time.Second)
	first := metric(t, s.Ports.MetricsURL(statsv1.ServiceName), "events_consumed_total", `result="ok"`)
	other := metric(t, "http://"+metrics+"/metrics", "events_consumed_total", `result="ok"`)
	t.Logf("the replicas counted %v and %v events of one name", first, other)
	if first == 0 || other == 0 || first+other < 400 {
		t.Fatalf("the replicas counted %v and %v events, want both some, 400 in all", first, other)
	}
}
