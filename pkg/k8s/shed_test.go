package k8s

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"go-micro.dev/v6"
	debugpb "go-micro.dev/v6/debug/proto"
	"go-micro.dev/v6/web"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Block is a handler whose Wait answers only when released.
type Block struct{ release chan struct{} }

func (b *Block) Wait(_ context.Context, _ *debugpb.HealthRequest, rsp *debugpb.HealthResponse) error {
	<-b.release
	rsp.Status = "released"
	return nil
}

// With the slots taken, a call is refused at once with RESOURCE_EXHAUSTED
// and counted; the health checks still answer; once a slot frees, calls
// are served again.
func TestGRPCCallsBeyondTheBoundAreRefused(t *testing.T) {
	const max = 2
	m := newTelemetry()
	shed := newShedder(m.registry)
	shed.max = max
	svc := newService("greeter", m, shed, streamWorkers, micro.Address("127.0.0.1:0"))
	block := &Block{release: make(chan struct{})}
	if err := svc.Server().Handle(svc.Server().NewHandler(block)); err != nil {
		t.Fatal(err)
	}
	serve(t, svc)
	cc := dial(t, svc.Server().Options().Address)
	call := func(method string, out any) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return cc.Invoke(ctx, method, &debugpb.HealthRequest{}, out)
	}

	var wg sync.WaitGroup
	for range max {
		wg.Go(func() {
			if err := call("/greeter.Block/Wait", &debugpb.HealthResponse{}); err != nil {
				t.Errorf("a blocked call: %v", err)
			}
		})
	}
	// Wait until both are in flight: the next is refused.
	deadline := time.Now().Add(5 * time.Second)
	for shed.limiter == nil || working(shed.limiter) < max && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	err := call("/greeter.Block/Wait", &debugpb.HealthResponse{})
	if status.Code(err) != codes.ResourceExhausted || time.Since(start) > time.Second {
		t.Fatalf("a call beyond the bound: %v after %s, want RESOURCE_EXHAUSTED at once", err, time.Since(start))
	}
	if err := call("/greeter.Debug/Health", &debugpb.HealthResponse{}); err != nil {
		t.Errorf("Debug.Health while overloaded: %v", err)
	}
	if err := call("/grpc.health.v1.Health/Check", &healthpb.HealthCheckResponse{}); err != nil {
		t.Errorf("grpc.health.v1 while overloaded: %v", err)
	}
	close(block.release)
	wg.Wait()
	if err := call("/greeter.Block/Wait", &debugpb.HealthResponse{}); err != nil {
		t.Errorf("a call after the overload: %v", err)
	}
	if n := counter(t, m, "rpc_server_shed_total"); n != 1 {
		t.Errorf("rpc_server_shed_total = %v, want 1", n)
	}
}

// The same for HTTP: 503 with Retry-After and a JSON error, the probes'
// paths always answered.
func TestHTTPRequestsBeyondTheBoundAreRefused(t *testing.T) {
	svc := NewWebService("web", web.Address("127.0.0.1:0"))
	ws := svc.(webService)
	ws.shed.max = 1
	release, entered := make(chan struct{}), make(chan struct{})
	svc.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		close(entered)
		<-release
	})
	serve(t, svc)
	base := "http://" + svc.Options().Address
	done := make(chan error, 1)
	go func() {
		rsp, err := http.Get(base + "/slow")
		if err == nil {
			rsp.Body.Close()
		}
		done <- err
	}()
	<-entered

	rsp, err := http.Get(base + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rsp.Body)
	rsp.Body.Close()
	var e struct{ Error string }
	if rsp.StatusCode != http.StatusServiceUnavailable || rsp.Header.Get("Retry-After") != "1" || json.Unmarshal(body, &e) != nil || e.Error == "" {
		t.Errorf("beyond the bound: %d, Retry-After %q, %s; want 503, 1 and a JSON error", rsp.StatusCode, rsp.Header.Get("Retry-After"), body)
	}
	if rsp, err := http.Get(base + "/health"); err != nil || rsp.StatusCode != http.StatusOK {
		t.Errorf("/health while overloaded: %v %v", rsp, err)
	} else {
		rsp.Body.Close()
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := counter(t, ws.telemetry, "http_server_shed_total"); n != 1 {
		t.Errorf("http_server_shed_total = %v, want 1", n)
	}
}

// A handler sees Overloaded only while requests queue for a slot of its
// server's limiter: not for a request alone, and not outside a request.
func TestOverloadedWhileRequestsQueue(t *testing.T) {
	svc := NewWebService("web", web.Address("127.0.0.1:0"))
	ws := svc.(webService)
	var seen context.Context
	svc.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { seen = r.Context() })
	serve(t, svc)
	rsp, err := http.Get("http://" + svc.Options().Address + "/")
	if err != nil {
		t.Fatal(err)
	}
	rsp.Body.Close()
	if Overloaded(seen) {
		t.Fatal("a request alone: Overloaded, want not")
	}
	// The same request's context, while the server's limiter is full and
	// one more request waits.
	l := ws.shed.limiter
	fill(t, l)
	if Overloaded(seen) {
		t.Error("every slot taken, none queued: Overloaded, want not")
	}
	out := make(chan admission, 1)
	enqueue(t, t.Context(), l, 1, out)
	if !Overloaded(seen) {
		t.Error("a request queued: not Overloaded, want Overloaded")
	}
	<-out // refused at the queue's bound
	if Overloaded(seen) {
		t.Error("the queue empty again: Overloaded, want not")
	}
	if Overloaded(t.Context()) {
		t.Error("a context of no request: Overloaded, want not")
	}
}

// counter is the sum of a counter's series in m's registry.
func counter(t *testing.T, m *telemetry, name string) float64 {
	t.Helper()
	families, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, metric := range f.GetMetric() {
				total += metric.GetCounter().GetValue()
			}
		}
	}
	return total
}
