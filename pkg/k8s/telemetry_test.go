package k8s

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go-micro.dev/v6"
	"go-micro.dev/v6/client"
	debugpb "go-micro.dev/v6/debug/proto"
	"go-micro.dev/v6/web"
)

func scrape(t *testing.T, addr string) string {
	t.Helper()
	rsp, err := http.Get("http://" + addr + MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	b, err := io.ReadAll(rsp.Body)
	if err != nil || rsp.StatusCode != http.StatusOK {
		t.Fatalf("scraping: %d %v", rsp.StatusCode, err)
	}
	return string(b)
}

func TestRPCMetrics(t *testing.T) {
	m := newTelemetry()
	m.addr = "127.0.0.1:0"
	svc := newService("greeter", m, newShedder(m.registry), streamWorkers, micro.Address("127.0.0.1:0"))
	serve(t, svc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 3 {
		if _, err := debugpb.NewDebugService("greeter", svc.Client()).Health(ctx, &debugpb.HealthRequest{},
			client.WithAddress(svc.Server().Options().Address)); err != nil {
			t.Fatal(err)
		}
	}
	got := scrape(t, m.server.Addr)
	for _, want := range []string{
		`rpc_server_requests_total{code="OK",method="Debug.Health"} 3`,
		`rpc_server_duration_seconds_count{method="Debug.Health"} 3`,
		`go_goroutines `,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in the metrics", want)
		}
	}
}

func TestHTTPMetrics(t *testing.T) {
	svc := NewWebService("web", web.Address("127.0.0.1:0"))
	m := svc.(webService).telemetry
	m.addr = "127.0.0.1:0"
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	svc.Handle("/", mux)
	serve(t, svc)
	for _, path := range []string{"/items/1", "/items/2", "/nothing"} {
		rsp, err := http.Get("http://" + svc.Options().Address + path)
		if err != nil {
			t.Fatal(err)
		}
		rsp.Body.Close()
	}
	got := scrape(t, m.server.Addr)
	for _, want := range []string{
		`http_server_requests_total{code="418",method="GET",route="GET /items/{id}"} 2`,
		`http_server_requests_total{code="404",method="GET",route="unmatched"} 1`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in the metrics:\n%s", want, grep(got, "http_server_requests_total"))
		}
	}
}

func grep(text, prefix string) string {
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}
