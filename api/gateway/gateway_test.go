package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go-micro.dev/v6"
	"go-micro.dev/v6/errors"

	"github.com/micro/kubernetes/pkg/k8s"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

// greeterFunc is a Greeter handler defined by a func, served by a real
// go-micro gRPC server, to make the greeter answer or fail on purpose.
type greeterFunc func(ctx context.Context, req *greeterv1.HelloRequest, rsp *greeterv1.HelloResponse) error

func (f greeterFunc) Hello(ctx context.Context, req *greeterv1.HelloRequest, rsp *greeterv1.HelloResponse) error {
	return f(ctx, req, rsp)
}

// hello greets as the greeter does, and refuses an empty name as it does.
func hello(_ context.Context, req *greeterv1.HelloRequest, rsp *greeterv1.HelloResponse) error {
	if req.Name == "" {
		return errors.BadRequest("greeter", "name must not be empty")
	}
	rsp.Message = "Hello " + req.Name
	return nil
}

func serveGreeter(t testing.TB, h greeterFunc) string {
	t.Helper()
	svc := k8s.NewService(greeterv1.ServiceName, micro.Address("127.0.0.1:0"))
	if err := greeterv1.RegisterGreeterHandler(svc.Server(), h); err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return svc.Server().Options().Address
}

// greeterOnly allows the greeter's one endpoint, as deploy/base/config.json.
var greeterOnly = Config{Allow: map[string][]string{greeterv1.ServiceName: {"Greeter.Hello"}}}

// gatewayTo serves the gateway with the static selector resolving the
// greeter to addr, as `make run` does.
func gatewayTo(t testing.TB, addr string, timeout time.Duration) http.Handler {
	t.Helper()
	t.Setenv(k8s.EnvAddresses, greeterv1.ServiceName+"="+addr)
	return New(k8s.NewService("api").Client(), timeout, func() Config { return greeterOnly })
}

type answer struct {
	status int
	header http.Header
	body   map[string]string
}

func post(t *testing.T, h http.Handler, method, path, body string) answer {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	var a answer
	a.status, a.header = w.Code, w.Header()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, want application/json; body %q", method, path, ct, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &a.body); err != nil {
		t.Fatalf("%s %s: body %q is not a JSON object of strings: %v", method, path, w.Body, err)
	}
	return a
}

func TestCallsAnAllowedEndpoint(t *testing.T) {
	h := gatewayTo(t, serveGreeter(t, hello), time.Second)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/greeter/Greeter.Hello", strings.NewReader(`{"name":"Ada"}`)))
	if want := "{\"message\":\"Hello Ada\"}\n"; w.Code != 200 || w.Body.String() != want || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %s %q, want 200 application/json %q", w.Code, w.Header().Get("Content-Type"), w.Body, want)
	}
}

func TestRefusals(t *testing.T) {
	h := gatewayTo(t, serveGreeter(t, hello), time.Second)
	big := `{"name":"` + strings.Repeat("x", MaxBody) + `"}`
	for _, c := range []struct {
		what, method, path, body string
		status                   int
		text                     string
	}{
		{"the debug endpoint", "POST", "/greeter/Debug.Health", `{}`, 404, "no such endpoint"},
		{"the gRPC health service", "POST", "/greeter/grpc.health.v1.Health.Check", `{}`, 404, "no such endpoint"},
		{"an unknown service", "POST", "/orders/Orders.Hello", `{}`, 404, "no such endpoint"},
		{"an unknown endpoint", "POST", "/greeter/Greeter.Goodbye", `{}`, 404, "no such endpoint"},
		{"a GET of a hidden endpoint", "GET", "/greeter/Debug.Health", ``, 404, "no such endpoint"},
		{"no endpoint", "POST", "/greeter", `{}`, 404, "no such path"},
		{"a deeper path", "POST", "/greeter/Greeter.Hello/x", `{}`, 404, "no such path"},
		{"a GET", "GET", "/greeter/Greeter.Hello", ``, 405, "POST"},
		{"a body over the limit", "POST", "/greeter/Greeter.Hello", big, 413, "over"},
		{"not JSON", "POST", "/greeter/Greeter.Hello", `{"name":`, 400, "JSON object"},
		{"a JSON array", "POST", "/greeter/Greeter.Hello", `["Ada"]`, 400, "JSON object"},
		{"a field the request has not", "POST", "/greeter/Greeter.Hello", `{"nom":"Ada"}`, 400, "nom"},
		{"a field of the wrong type", "POST", "/greeter/Greeter.Hello", `{"name":7}`, 400, "name"},
		{"the service refusing the request", "POST", "/greeter/Greeter.Hello", ``, 400, "name must not be empty"},
	} {
		t.Run(c.what, func(t *testing.T) {
			a := post(t, h, c.method, c.path, c.body)
			if a.status != c.status || !strings.Contains(a.body["error"], c.text) {
				t.Fatalf("got %d %v, want %d with an error containing %q", a.status, a.body, c.status, c.text)
			}
			if c.status == 405 && a.header.Get("Allow") != "POST" {
				t.Errorf("Allow: %q, want POST", a.header.Get("Allow"))
			}
		})
	}
}

func TestServiceFailures(t *testing.T) {
	const timeout = 200 * time.Millisecond
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	for _, c := range []struct {
		what   string
		addr   func() string
		status int
		text   string
	}{
		{"too slow", func() string {
			return serveGreeter(t, func(ctx context.Context, _ *greeterv1.HelloRequest, _ *greeterv1.HelloResponse) error {
				<-ctx.Done()
				return ctx.Err()
			})
		}, 504, "did not answer within 200ms"},
		{"fails", func() string {
			return serveGreeter(t, func(context.Context, *greeterv1.HelloRequest, *greeterv1.HelloResponse) error {
				return errors.InternalServerError("greeter", "disk on fire")
			})
		}, 502, "failed to answer"},
		{"unreachable", closed, 503, "unavailable"},
	} {
		t.Run(c.what, func(t *testing.T) {
			a := post(t, gatewayTo(t, c.addr(), timeout), "POST", "/greeter/Greeter.Hello", `{"name":"Ada"}`)
			if a.status != c.status || !strings.Contains(a.body["error"], c.text) {
				t.Fatalf("got %d %v, want %d with an error containing %q", a.status, a.body, c.status, c.text)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`{"api": {"allow": {"greeter": ["Greeter.Hello"], "orders": ["Orders.Hello", "Orders.List"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Allowed("orders", "Orders.List") || c.Allowed("orders", "Greeter.Hello") || c.Allowed("web", "Greeter.Hello") {
		t.Errorf("Allowed does not follow the list %v", c.Allow)
	}
	if c, err := ParseConfig([]byte(`{"web": {}}`)); err != nil || len(c.Allow) != 0 {
		t.Errorf("no api section: %v %v, want an empty list", c, err)
	}
	for _, bad := range []string{
		`{"api": {"allow": {"greeter": ["Debug.Health"]}}}`,
		`{"api": {"allow": {"greeter": ["grpc.health.v1.Health.Check"]}}}`,
		`{"api": {"allow": {"Greeter": ["Greeter.Hello"]}}}`,
		`{"api": {"allow": {"greeter": ["Hello"]}}}`,
		`{"api": {"allow": {"greeter": "Greeter.Hello"}}}`,
		`{"api": [`,
	} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("ParseConfig(%s) accepted it", bad)
		}
	}
}

func TestHealth(t *testing.T) {
	srv := httptest.NewServer(New(nil, time.Second, func() Config { return Config{} }))
	defer srv.Close()
	rsp, err := http.Get(srv.URL + HealthPath)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	body, _ := io.ReadAll(rsp.Body)
	if rsp.StatusCode != 200 || !strings.Contains(string(body), `"ok"`) {
		t.Fatalf("%s: %d %s", HealthPath, rsp.StatusCode, body)
	}
}
