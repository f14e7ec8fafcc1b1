package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/micro/kubernetes/dev/stack"
	"github.com/micro/kubernetes/pkg/k8s"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

// refusedFast bounds how long a refusal may take: it is answered before
// any work, so anything near the web's deadline means it queued.
const refusedFast = 200 * time.Millisecond

// With a bound of 4 requests in flight, what comes beyond it is refused at
// once (the greeter: RESOURCE_EXHAUSTED; the web: 503, Retry-After and a
// JSON error) and counted, the health checks and probes always answer, and
// the requests in flight are served. Every binary runs with the memory
// limit the stack gives it, at 90%.
func TestOverloadIsRefusedAtOnce(t *testing.T) {
	const max = 4
	root, err := stack.Root(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s := startOptions(t, stack.Options{Ports: freePorts(t, 1), ConfigFile: filepath.Join(root, stack.ConfigFile),
		Env: []string{k8s.EnvMaxInFlight + "=" + strconv.Itoa(max)}})

	t.Run("gRPC", func(t *testing.T) {
		cc, err := grpc.NewClient(s.Ports.GreeterAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		hello := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return cc.Invoke(ctx, "/greeter.v1.Greeter/Hello", &greeterv1.HelloRequest{Name: "x"}, &greeterv1.HelloResponse{})
		}
		// Calls whose request never comes hold a slot each: the server
		// has taken them and waits for the message.
		held, release := context.WithCancel(context.Background())
		for range max {
			if _, err := cc.NewStream(held, &grpc.StreamDesc{ServerStreams: true}, "/greeter.v1.Greeter/Hello"); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for metric(t, s.Ports.MetricsURL("greeter"), "server_requests_in_flight") < max && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		start := time.Now()
		err = hello()
		if status.Code(err) != codes.ResourceExhausted || time.Since(start) > refusedFast {
			t.Fatalf("a call beyond the bound: %v after %s, want RESOURCE_EXHAUSTED at once", err, time.Since(start))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if rsp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || rsp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("the gRPC health check while overloaded: %v %v", rsp, err)
		}
		if a := get(t, "GET", s.Ports.HealthURL()); a.status != 200 {
			t.Errorf("the sidecar while the greeter is overloaded: %d %s", a.status, a.body)
		}
		// The web passes the greeter's refusal on, at once, as its own.
		start = time.Now()
		a := get(t, "GET", s.Ports.URL()+"/greeter?name=refused")
		if took := time.Since(start); a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") != "1" || took > refusedFast {
			t.Errorf("the web while the greeter refuses: %d after %s, Retry-After %q, %s; want 503 at once and 1", a.status, took, a.header.Get("Retry-After"), a.body)
		}
		release()
		deadline = time.Now().Add(5 * time.Second)
		for err = hello(); err != nil && time.Now().Before(deadline); err = hello() {
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("after the overload: %v", err)
		}
		if n := metric(t, s.Ports.MetricsURL("greeter"), "rpc_server_shed_total"); n < 1 {
			t.Errorf("rpc_server_shed_total = %v, want the refusals counted", n)
		}
	})

	t.Run("HTTP", func(t *testing.T) {
		// With the greeter frozen, the web's requests wait on it: max of
		// them fill the web's slots. Then the greeter thaws and they are
		// served.
		if err := s.Freeze("greeter"); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		statuses := make(chan int, max)
		for range max {
			wg.Go(func() {
				rsp, err := (&http.Client{Timeout: 10 * time.Second}).Get(s.Ports.URL() + "/greeter?name=held")
				if err != nil {
					t.Error(err)
					return
				}
				rsp.Body.Close()
				statuses <- rsp.StatusCode
			})
		}
		for deadline := time.Now().Add(time.Second); metric(t, s.Ports.MetricsURL("web"), "server_requests_in_flight") < max && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		start := time.Now()
		a := get(t, "GET", s.Ports.URL()+"/greeter?name=extra")
		took := time.Since(start)
		var e struct{ Error string }
		if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") != "1" || json.Unmarshal([]byte(a.body), &e) != nil || e.Error == "" || took > refusedFast {
			t.Errorf("beyond the bound: %d after %s, Retry-After %q, %s; want 503 at once, 1 and a JSON error", a.status, took, a.header.Get("Retry-After"), a.body)
		}
		if a := get(t, "GET", s.Ports.URL()+"/health"); a.status != 200 {
			t.Errorf("/health while overloaded: %d %s", a.status, a.body)
		}
		if err := s.Signal("greeter", syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		close(statuses)
		for st := range statuses {
			if st != 200 {
				t.Errorf("a request in flight got %d, want it served", st)
			}
		}
		if n := metric(t, s.Ports.MetricsURL("web"), "http_server_shed_total"); n < 1 {
			t.Errorf("http_server_shed_total = %v, want the refusals counted", n)
		}
	})

	t.Run("memory limit", func(t *testing.T) {
		want := float64(stack.MemoryLimit / 100 * k8s.MemoryLimitPercent)
		for _, name := range []string{"greeter", "web"} {
			if got := metric(t, s.Ports.MetricsURL(name), "go_gc_gomemlimit_bytes"); got != want {
				t.Errorf("%s's Go memory limit is %v, want %v", name, got, want)
			}
		}
	})
}
