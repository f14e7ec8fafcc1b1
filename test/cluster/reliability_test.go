package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Bounds the reliability checks assert; the README's Reliability figures are
// what they measured.
const (
	// hungRestartBound: from a frozen greeter to a serving one. The liveness
	// probe fails 3 times 5 s apart (at most 15 s), the hung process is
	// killed after the probe's 5 s grace, the container starts in about a
	// second and the readiness probe (every 5 s) passes: about 27 s at
	// worst, with room for a busy machine.
	hungRestartBound = 45 * time.Second
	// configBound: the kubelet refreshes a mounted ConfigMap when it syncs
	// the pod, every minute and some jitter (measured: 1 s to 90 s), and the
	// services read the file every 2 s.
	configBound = 3 * time.Minute
	// greeterDeadline is the web's deadline on the greeter
	// (--greeter_timeout, 2 s by default), and slack for the answer to
	// reach the test: a run with the machine 97% busy had its slowest
	// answer arrive 2.65 s after it was sent. Without the deadline, a
	// call to a frozen greeter waits 12 s, for gRPC's keepalive to give
	// up on it.
	greeterDeadline = 2*time.Second + time.Second
	// loadRate is the rate of the request loops, in requests a second.
	loadRate = 60
)

// TestReliability deploys the application with `skaffold run` into a
// namespace of its own and, in turn: edits the ConfigMap; restarts both
// Deployments under load; freezes the greeter; kills it. Each must go as
// the README says, with no human action.
func TestReliability(t *testing.T) {
	t.Parallel()
	const ns = "reliability"
	deploy(t, ns, nil)
	if _, err := eventually(t.Context(), time.Minute, func(ctx context.Context) error { return allReady(ctx, ns) }); err != nil {
		t.Fatal(err)
	}
	url := serviceURL("web", ns) + "/greeter?name=Node"

	t.Run("ConfigMap edit changes the greeting without a restart", func(t *testing.T) {
		before := restarts(t, ns)
		took := setGreeting(t, ns, "Hi {name}", url, "Hi Node")
		t.Logf("the greeting changed %s after the ConfigMap edit", took.Round(time.Second))
		if after := restarts(t, ns); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("restart counts were %v, are %v", before, after)
		}
		took = setGreeting(t, ns, "Hello {name}", url, "Hello Node")
		t.Logf("and back %s after the second edit", took.Round(time.Second))
	})

	t.Run("rolling restarts under load lose nothing", func(t *testing.T) {
		l := startLoop(t.Context(), url, loadRate)
		t0 := time.Now()
		began := map[string]time.Duration{}
		for _, d := range []string{"greeter", "web"} {
			began[d] = time.Since(t0)
			kubectl(t, "rollout", "restart", "deployment/"+d, "--namespace="+ns)
			kubectl(t, "rollout", "status", "deployment/"+d, "--namespace="+ns, "--timeout=3m")
		}
		// The old pods' last connections end: the greeter's after its
		// preStop and graceful stop, the web's after its own.
		time.Sleep(12 * time.Second)
		results := l.stop()
		s := summarize(results)
		t.Logf("%d requests in %s (%.0f/s) across both rollouts (the greeter's began at +0s, the web's at +%s): %v",
			len(results), s.span.Round(time.Second), s.rate, began["web"].Round(time.Second), s.statuses)
		if s.statuses["200"] != len(results) {
			t.Errorf("not every answer was 200: %v", s.statuses)
			for _, line := range failedRuns(results, t0, []mark{{t0, "the greeter's rollout began"}, {t0.Add(began["web"]), "the web's rollout began"}}) {
				t.Error("  " + line)
			}
		}
		if s.rate < 50 {
			t.Errorf("the loop sent %.0f requests a second, want at least 50", s.rate)
		}
	})

	t.Run("a frozen greeter is restarted through the health sidecar", func(t *testing.T) {
		faultOneGreeter(t, ns, url, syscall.SIGSTOP, func(t *testing.T, pod corev1.Pod) {
			// The sidecar, asked as the kubelet asks it, answers 503.
			sidecar := "http://" + net.JoinHostPort(pod.Status.PodIP, "8081") + "/health"
			if _, err := eventually(t.Context(), 10*time.Second, func(ctx context.Context) error {
				a, err := get(ctx, sidecar)
				if err == nil && a.status != 503 {
					err = fmt.Errorf("the sidecar answered %d %s", a.status, a.body)
				}
				return err
			}); err != nil {
				t.Errorf("the sidecar of a frozen greeter: %v, want 503", err)
			}
		})
	})

	t.Run("a killed greeter comes back by itself", func(t *testing.T) {
		faultOneGreeter(t, ns, url, syscall.SIGKILL, nil)
	})
}

// faultOneGreeter sends sig to one of the greeter's two pods under a
// request loop, then runs check. The kubelet must restart it within
// hungRestartBound and it must serve again; meanwhile the web answers 200,
// or 503 or 504 within its deadline on the greeter, and any failures stop
// by themselves.
func faultOneGreeter(t *testing.T, ns, url string, sig syscall.Signal, check func(*testing.T, corev1.Pod)) {
	pod := livePods(t, ns, "greeter")[0]
	before := containerRestarts(pod, "greeter")
	l := startLoop(t.Context(), url, 20)
	time.Sleep(2 * time.Second)
	t0 := time.Now()
	signalContainer(t, pod, "greeter", sig)
	if check != nil {
		check(t, pod)
	}
	_, err := eventually(t.Context(), time.Until(t0.Add(hungRestartBound)), func(ctx context.Context) error {
		p := getPod(t, ns, pod.Name)
		if n := containerRestarts(p, "greeter"); n != before+1 {
			return fmt.Errorf("restarted %d times, want %d", n, before+1)
		}
		return allReady(ctx, ns)
	})
	if err != nil {
		t.Fatalf("the kubelet did not restart the greeter: %v", err)
	}
	restarted := time.Since(t0)
	// The restarted greeter takes calls again: the web reconnects to it.
	first, err := served(t.Context(), getPod(t, ns, pod.Name))
	if err != nil {
		t.Fatal(err)
	}
	serving, err := eventually(t.Context(), 30*time.Second, func(ctx context.Context) error {
		n, err := served(ctx, getPod(t, ns, pod.Name))
		if err == nil && n <= first {
			err = fmt.Errorf("served %v calls since its restart", n)
		}
		return err
	})
	if err != nil {
		t.Errorf("the restarted greeter takes no calls: %v", err)
	}
	failuresStopped := waitServing(t, l, t0, hungRestartBound)
	results := l.stop()
	t.Logf("%v: failures stopped %s after; the kubelet restarted it and it was Ready %s after, serving calls %s later",
		sig, failuresStopped.Round(100*time.Millisecond), restarted.Round(100*time.Millisecond), serving.Round(100*time.Millisecond))
	checkOutage(t, results, t0, []string{"503", "504"})
}

// setGreeting edits the greeting in the ConfigMap and returns how long the
// answer at url took to say want.
func setGreeting(t *testing.T, ns, greeting, url, want string) time.Duration {
	t.Helper()
	cms := env.cluster.Client.CoreV1().ConfigMaps(ns)
	cm, err := cms.Get(t.Context(), "config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var config map[string]map[string]any
	if err := json.Unmarshal([]byte(cm.Data["config.json"]), &config); err != nil {
		t.Fatalf("config.json: %v", err)
	}
	config["greeter"]["greeting"] = greeting
	b, err := json.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["config.json"] = string(b)
	if _, err := cms.Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	took, err := eventually(t.Context(), configBound, func(ctx context.Context) error {
		a, err := get(ctx, url)
		if err == nil && !strings.Contains(a.body, `"`+want+`"`) {
			err = fmt.Errorf("answered %d %s", a.status, a.body)
		}
		return err
	})
	if err != nil {
		t.Fatalf("after the ConfigMap edit, want %q: %v", want, err)
	}
	return took
}

func kubectl(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), env.cluster.Host.Bins.Kubectl, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.cluster.Kubeconfig)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func containerRestarts(p corev1.Pod, name string) int32 {
	for _, c := range p.Status.ContainerStatuses {
		if c.Name == name {
			return c.RestartCount
		}
	}
	return -1
}

// signalContainer sends sig to the main process of a pod's container. The
// tests run in the cluster's PID namespace, where the container's processes
// are visible: its process is the one in the container's cgroup.
func signalContainer(t *testing.T, pod corev1.Pod, name string, sig syscall.Signal) {
	t.Helper()
	var id string
	for _, c := range pod.Status.ContainerStatuses {
		if c.Name == name {
			_, id, _ = strings.Cut(c.ContainerID, "://")
		}
	}
	if id == "" {
		t.Fatalf("pod %s has no container %s", pod.Name, name)
	}
	cgroups, err := filepath.Glob("/proc/[0-9]*/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range cgroups {
		b, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(b), id) {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(f, "/proc/%d/cgroup", &pid); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatal(err)
		}
		t.Logf("sent %v to %s/%s (pid %d)", sig, pod.Name, name, pid)
		return
	}
	t.Fatalf("no process in the cgroup of %s/%s (%s)", pod.Name, name, id)
}

// result is one request of a loop.
type result struct {
	at     time.Time
	status string // the HTTP status, or the error
	took   time.Duration
}

// loop sends GET url at a fixed rate until stopped.
type loop struct {
	mu      sync.Mutex
	results []result
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func startLoop(ctx context.Context, url string, rate int) *loop {
	return startLoopWith(ctx, client, url, rate)
}

// startLoopWith is startLoop with its own HTTP client.
func startLoopWith(ctx context.Context, c *http.Client, url string, rate int) *loop {
	ctx, cancel := context.WithCancel(ctx)
	l := &loop{cancel: cancel}
	l.wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l.wg.Go(func() {
				start := time.Now()
				status := ""
				a, err := doWith(context.WithoutCancel(ctx), c, http.MethodGet, url, "")
				if err != nil {
					status = err.Error()
				} else {
					status = fmt.Sprint(a.status)
				}
				l.mu.Lock()
				l.results = append(l.results, result{at: start, status: status, took: time.Since(start)})
				l.mu.Unlock()
			})
		}
	})
	return l
}

func (l *loop) stop() []result {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	sort.Slice(l.results, func(i, j int) bool { return l.results[i].at.Before(l.results[j].at) })
	return l.results
}

// lastNon200 is when the last request that did not get 200 was sent.
func (l *loop) lastNon200() (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var last time.Time
	for _, r := range l.results {
		if r.status != "200" && r.at.After(last) {
			last = r.at
		}
	}
	return last, !last.IsZero()
}

// waitServing waits until every request sent in a quiet spell after the
// last failure since t0 (or after t0, when none failed) got 200, and
// returns from t0 to that last failure (0 for none). Requests complete out
// of order (a 504 takes the web's whole deadline): only those sent longer
// ago than the deadline are known.
func waitServing(t *testing.T, l *loop, t0 time.Time, bound time.Duration) time.Duration {
	t.Helper()
	const quiet = 5 * time.Second
	since := t0
	_, err := eventually(t.Context(), bound+quiet+greeterDeadline, func(context.Context) error {
		if last, failed := l.lastNon200(); failed && last.After(t0) {
			since = last
		}
		if time.Since(since) < quiet+greeterDeadline {
			return fmt.Errorf("the last failure was sent %s after", since.Sub(t0).Round(time.Millisecond))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the web did not answer 200 again: %v", err)
	}
	back := since.Sub(t0)
	if back > bound {
		t.Errorf("serving again %s after, want within %s", back.Round(100*time.Millisecond), bound)
	}
	return back
}

// checkOutage checks the answers from t0 on: only the allowed statuses
// besides 200, each within the web's deadline on the greeter.
func checkOutage(t *testing.T, results []result, t0 time.Time, allowed []string) {
	t.Helper()
	s := summarize(results)
	t.Logf("%d requests: %v", len(results), s.statuses)
	slowest := time.Duration(0)
	for _, r := range results {
		if r.at.Before(t0) {
			continue
		}
		slowest = max(slowest, r.took)
		if r.status != "200" && !slices.Contains(allowed, r.status) {
			t.Errorf("answered %q at %s, want 200 or %v", r.status, r.at.Sub(t0).Round(time.Millisecond), allowed)
		}
	}
	if slowest > greeterDeadline {
		t.Errorf("the slowest answer took %s, over the web's deadline on the greeter", slowest)
	}
	t.Logf("the slowest answer took %s", slowest.Round(time.Millisecond))
}

// mark is a moment of a test, to place failures by.
type mark struct {
	at   time.Time
	what string
}

// failedRuns describes the answers other than 200 as runs of consecutive
// answers (in the order sent) with one status: when they were sent (from t0), how
// long they took, and the last mark before them. A run of 504s says the
// web waited out its deadline on calls sent in that span; 503s that it
// found nothing to call. It describes the first 20 runs.
func failedRuns(results []result, t0 time.Time, marks []mark) []string {
	const most = 20
	var lines []string
	runs := 0
	for i := 0; i < len(results); {
		if results[i].status == "200" {
			i++
			continue
		}
		j, slowest := i, time.Duration(0)
		for ; j < len(results) && results[j].status == results[i].status; j++ {
			slowest = max(slowest, results[j].took)
		}
		after := "the start"
		for _, m := range marks {
			if !m.at.After(results[i].at) {
				after = fmt.Sprintf("%s (+%s)", m.what, m.at.Sub(t0).Round(100*time.Millisecond))
			}
		}
		if runs++; runs > most {
			i = j
			continue
		}
		lines = append(lines, fmt.Sprintf("%d× %s, sent from +%s to +%s, the slowest after %s; the last step before: %s",
			j-i, results[i].status, results[i].at.Sub(t0).Round(100*time.Millisecond),
			results[j-1].at.Sub(t0).Round(100*time.Millisecond), slowest.Round(100*time.Millisecond), after))
		i = j
	}
	if runs > most {
		lines = append(lines, fmt.Sprintf("and %d runs more", runs-most))
	}
	return lines
}

type summary struct {
	statuses map[string]int
	span     time.Duration
	rate     float64
}

func summarize(results []result) summary {
	s := summary{statuses: map[string]int{}}
	for _, r := range results {
		s.statuses[r.status]++
	}
	if len(results) > 1 {
		s.span = results[len(results)-1].at.Sub(results[0].at)
		s.rate = float64(len(results)-1) / s.span.Seconds()
	}
	return s
}
