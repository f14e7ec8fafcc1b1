package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/micro/kubernetes/pkg/k8s"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

func TestGRPCThroughTheStaticSelector(t *testing.T) {
	s := startStack(t)
	// The client resolves the name "greeter" like the web frontend does.
	t.Setenv(k8s.EnvAddresses, greeterv1.ServiceName+"="+s.Ports.GreeterAddress())
	greeter := greeterv1.NewGreeterService(greeterv1.ServiceName, k8s.NewService("e2e").Client())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rsp, err := greeter.Hello(ctx, &greeterv1.HelloRequest{Name: "Kubernetes"})
	if err != nil {
		t.Fatalf("Hello: %v", err)
	}
	if rsp.Message != "Hello Kubernetes" {
		t.Fatalf("Hello = %q, want %q", rsp.Message, "Hello Kubernetes")
	}
}

// rawCodec puts bytes on the wire as they are; its name makes the greeter
// decode them as protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

// A plain grpc-go client, with no go-micro, sees the standard status codes.
func TestGRPCRefusesBadNames(t *testing.T) {
	s := startStack(t)
	cc, err := grpc.NewClient(s.Ports.GreeterAddress(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	defer cc.Close()
	const method = "/greeter.v1.Greeter/Hello"

	cases := map[string]struct {
		name, want string
	}{
		"empty":    {"", "must not be empty"},
		"too long": {strings.Repeat("x", 101), "at most 100 characters"},
	}
	for what, c := range cases {
		t.Run(what, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := cc.Invoke(ctx, method, &greeterv1.HelloRequest{Name: c.name}, new(greeterv1.HelloResponse))
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want InvalidArgument saying %q", err, c.want)
			}
		})
	}
	t.Run("not UTF-8", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var out []byte
		err := cc.Invoke(ctx, method, []byte{0x0a, 0x02, 0xff, 0xfe}, &out, grpc.ForceCodec(rawCodec{}))
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "UTF-8") {
			t.Fatalf("got %v, want InvalidArgument naming UTF-8", err)
		}
	})
	t.Run("no reflection and no debug endpoints but Health", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, m := range []string{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "/greeter.Debug/Stats", "/greeter.Debug/Log"} {
			var out []byte
			err := cc.Invoke(ctx, m, []byte{}, &out, grpc.ForceCodec(rawCodec{}))
			if status.Code(err) != codes.Unimplemented {
				t.Errorf("%s: %v, want Unimplemented", m, err)
			}
		}
	})
	t.Run("standard gRPC health", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rsp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || rsp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("grpc.health.v1.Health/Check: %v, %v; want SERVING", rsp, err)
		}
	})
	t.Run("valid", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rsp := new(greeterv1.HelloResponse)
		if err := cc.Invoke(ctx, method, &greeterv1.HelloRequest{Name: "grpc-go"}, rsp); err != nil || rsp.Message != "Hello grpc-go" {
			t.Fatalf("got %q, %v; want Hello grpc-go", rsp.Message, err)
		}
	})
}

type answer struct {
	status int
	header http.Header
	body   string
}

func get(t *testing.T, method, rawURL string) answer {
	t.Helper()
	return send(t, method, rawURL, "")
}

// send makes one request with this body, and reads the whole answer.
func send(t *testing.T, method, rawURL, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatalf("request %s %s: %v", method, rawURL, err)
	}
	rsp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer rsp.Body.Close()
	b, err := io.ReadAll(rsp.Body)
	if err != nil {
		t.Fatalf("reading %s %s: %v", method, rawURL, err)
	}
	return answer{rsp.StatusCode, rsp.Header, string(b)}
}

func TestJSONAPI(t *testing.T) {
	s := startStack(t)
	cases := []struct {
		what, method, path string
		status             int
		field, want        string // a JSON field of the body and what it must contain
	}{
		{"greets", "GET", "/greeter?name=Alice", 200, "message", "Hello Alice"},
		{"greets in any script", "GET", "/greeter?name=" + url.QueryEscape("世界"), 200, "message", "Hello 世界"},
		{"keeps markup as text", "GET", "/greeter?name=" + url.QueryEscape("<b>"), 200, "message", "Hello <b>"},
		{"no name", "GET", "/greeter", 400, "error", "must not be empty"},
		{"empty name", "GET", "/greeter?name=", 400, "error", "must not be empty"},
		{"too long", "GET", "/greeter?name=" + strings.Repeat("x", 101), 400, "error", "at most 100 characters"},
		{"not UTF-8", "GET", "/greeter?name=%ff", 400, "error", "UTF-8"},
		{"malformed query", "GET", "/greeter?name=%zz", 400, "error", "malformed query"},
		{"two names", "GET", "/greeter?name=a&name=b", 400, "error", "once"},
		{"unknown path", "GET", "/nope", 404, "error", "no such path"},
		{"wrong method", "POST", "/greeter?name=Alice", 405, "error", "not allowed"},
		{"wrong method on the page", "DELETE", "/", 405, "error", "not allowed"},
		{"health", "GET", "/health", 200, "status", "ok"},
		{"no profiler exposed", "GET", "/debug/pprof/", 404, "error", "no such path"},
		{"no folder listing", "GET", "/static/", 404, "error", "no such"},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			a := get(t, c.method, s.Ports.URL()+c.path)
			if a.status != c.status {
				t.Errorf("status %d, want %d (body %s)", a.status, c.status, a.body)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			// Strings, and a greeting's count of the name (the stats').
			var body map[string]any
			if err := json.Unmarshal([]byte(a.body), &body); err != nil {
				t.Fatalf("body %q is not a JSON object: %v", a.body, err)
			}
			for k, v := range body {
				if _, ok := v.(string); !ok && !(k == "greeted" && c.field == "message") {
					t.Errorf("body %s: %q is not a string", a.body, k)
				}
			}
			if text, _ := body[c.field].(string); !strings.Contains(text, c.want) {
				t.Errorf("body %s: %q does not contain %q", a.body, c.field, c.want)
			}
			if n, ok := body["greeted"].(float64); c.field == "message" && (!ok || n < 0) {
				t.Errorf("body %s: no count of the name", a.body)
			}
		})
	}
}

func TestPage(t *testing.T) {
	s := startStack(t)

	a := get(t, "GET", s.Ports.URL()+"/")
	if a.status != 200 || !strings.Contains(a.body, `<form id="greet" action="/" method="get">`) {
		t.Fatalf("GET /: %d, want 200 with the form; body:\n%s", a.status, a.body)
	}
	for h, want := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Content-Security-Policy": "default-src 'self'",
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := a.header.Get(h); !strings.Contains(got, want) {
			t.Errorf("%s = %q, want it to contain %q", h, got, want)
		}
	}
	if csp := a.header.Get("Content-Security-Policy"); strings.Contains(csp, "unsafe-inline") {
		t.Errorf("the CSP allows unsafe-inline: %s", csp)
	}

	// Without JavaScript the form submits GET /?name=..., rendered here.
	a = get(t, "GET", s.Ports.URL()+"/?name="+url.QueryEscape("<script>alert(1)</script>"))
	if a.status != 200 || !strings.Contains(a.body, "Hello &lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Fatalf("the greeting is missing or not escaped: %d\n%s", a.status, a.body)
	}
	if strings.Contains(a.body, "<script>alert") {
		t.Fatal("the name reached the page unescaped")
	}
	a = get(t, "GET", s.Ports.URL()+"/?name=")
	if a.status != 400 || !strings.Contains(a.body, "must not be empty") {
		t.Fatalf("an empty name: %d, want 400 with the reason in the page\n%s", a.status, a.body)
	}
	for _, asset := range []string{"/static/app.js", "/static/style.css"} {
		if a := get(t, "GET", s.Ports.URL()+asset); a.status != 200 || len(a.body) == 0 {
			t.Errorf("GET %s: %d, %d bytes", asset, a.status, len(a.body))
		}
	}
}
