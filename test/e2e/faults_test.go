package e2e

import (
	"encoding/json"
	"github.com/micro/kubernetes/health/probe"
	"github.com/micro/kubernetes/web/frontend"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The defaults the binaries run with: the sidecar's --health_timeout and the
// web frontend's --greeter_timeout.
const (
	sidecarTimeout = probe.DefaultTimeout
	webTimeout     = frontend.DefaultGreeterTimeout
	// slack allows for a loaded machine; the point is "bounded", not "fast".
	slack = time.Second
)

type timed struct {
	answer
	took time.Duration
}

func timedGet(t *testing.T, url string) timed {
	t.Helper()
	start := time.Now()
	a := get(t, "GET", url)
	return timed{a, time.Since(start)}
}

func errorOf(t *testing.T, a answer) string {
	t.Helper()
	var body map[string]string
	if err := json.Unmarshal([]byte(a.body), &body); err != nil {
		t.Fatalf("body %q is not JSON: %v", a.body, err)
	}
	return body["error"]
}

// expectBoundedFailure checks that url fails with status, saying says, and
// no later than bound.
func expectBoundedFailure(t *testing.T, url string, status int, says string, bound time.Duration) {
	t.Helper()
	a := timedGet(t, url)
	if a.status != status || !strings.Contains(errorOf(t, a.answer), says) {
		t.Errorf("GET %s: %d %s, want %d saying %q", url, a.status, a.body, status, says)
	}
	if a.took > bound+slack {
		t.Errorf("GET %s took %s, past its %s bound", url, a.took, bound)
	}
}

func TestSidecarWithTheGreeterUp(t *testing.T) {
	s := startStack(t)
	a := get(t, "GET", s.Ports.HealthURL())
	if a.status != http.StatusOK || !strings.Contains(a.body, `"status":"ok"`) {
		t.Fatalf("sidecar: %d %s, want 200 ok", a.status, a.body)
	}
	// The sidecar's own liveness does not depend on the greeter.
	if err := s.Signal("greeter", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.Exited()
	live := strings.TrimSuffix(s.Ports.HealthURL(), "/health") + "/livez"
	if a := get(t, "GET", live); a.status != http.StatusOK {
		t.Fatalf("sidecar /livez with the greeter gone: %d %s, want 200", a.status, a.body)
	}
}

func TestGreeterFrozen(t *testing.T) {
	s := startStack(t)
	if err := s.Freeze("greeter"); err != nil {
		t.Fatal(err)
	}

	expectBoundedFailure(t, s.Ports.HealthURL(), http.StatusServiceUnavailable, "within", sidecarTimeout)
	expectBoundedFailure(t, s.Ports.URL()+"/greeter?name=frozen", http.StatusGatewayTimeout, "did not answer", webTimeout)

	// Thawed, the same processes answer again.
	if err := s.Signal("greeter", syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if a := get(t, "GET", s.Ports.URL()+"/greeter?name=thawed"); a.status != http.StatusOK {
		t.Errorf("after SIGCONT web answered %d %s", a.status, a.body)
	}
	if a := get(t, "GET", s.Ports.HealthURL()); a.status != http.StatusOK {
		t.Errorf("after SIGCONT the sidecar answered %d %s", a.status, a.body)
	}
}

func TestGreeterKilled(t *testing.T) {
	s := startStack(t)
	if err := s.Signal("greeter", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait("greeter", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Refused, or EOF when the check runs on the connection the kill cut:
	// a failure, not a timeout, either way.
	expectBoundedFailure(t, s.Ports.HealthURL(), http.StatusServiceUnavailable, "Debug.Health failed", sidecarTimeout)
	expectBoundedFailure(t, s.Ports.URL()+"/greeter?name=gone", http.StatusServiceUnavailable, "unavailable", webTimeout)
}
