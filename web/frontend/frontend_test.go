package frontend

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
// go-micro gRPC server, to make the greeter fail in each way on purpose.
type greeterFunc func(ctx context.Context, req *greeterv1.HelloRequest, rsp *greeterv1.HelloResponse) error

func (f greeterFunc) Hello(ctx context.Context, req *greeterv1.HelloRequest, rsp *greeterv1.HelloResponse) error {
	return f(ctx, req, rsp)
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

// frontendTo serves the frontend with the static selector resolving the
// greeter to addr, as `make run` does.
func frontendTo(t *testing.T, addr string, timeout time.Duration) *httptest.Server {
	t.Helper()
	t.Setenv(k8s.EnvAddresses, greeterv1.ServiceName+"="+addr)
	greeter := greeterv1.NewGreeterService(greeterv1.ServiceName, k8s.NewService("web").Client())
	srv := httptest.NewServer(New(greeter, timeout, nil))
	t.Cleanup(srv.Close)
	return srv
}

func errorFrom(t *testing.T, srv *httptest.Server, query string) (int, string) {
	t.Helper()
	rsp, err := http.Get(srv.URL + "/greeter?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(rsp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return rsp.StatusCode, body["error"] + body["message"]
}

func TestGreeterFailuresMapToStatuses(t *testing.T) {
	const timeout = 200 * time.Millisecond
	closed := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}

	cases := []struct {
		what   string
		addr   func() string
		status int
		text   string
	}{
		{"answers", func() string {
			return serveGreeter(t, func(_ context.Context, req *greeterv1.HelloRequest, rsp *greeterv1.HelloResponse) error {
				rsp.Message = "Hi " + req.Name
				return nil
			})
		}, 200, "Hi x"},
		{"refuses the name", func() string {
			return serveGreeter(t, func(context.Context, *greeterv1.HelloRequest, *greeterv1.HelloResponse) error {
				return errors.BadRequest("greeter", "no such name")
			})
		}, 400, "no such name"},
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
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			srv := frontendTo(t, c.addr(), timeout)
			status, text := errorFrom(t, srv, "name=x")
			if status != c.status || !strings.Contains(text, c.text) {
				t.Fatalf("got %d %q, want %d containing %q", status, text, c.status, c.text)
			}
			// The page answers with the API's status, and a 503 of either
			// says when to try again.
			for _, path := range []string{"/greeter?name=x", "/?name=x"} {
				rsp, err := http.Get(srv.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				rsp.Body.Close()
				if retry := rsp.Header.Get("Retry-After"); rsp.StatusCode != c.status || (retry != "") != (c.status == 503) {
					t.Errorf("GET %s: %d, Retry-After %q; want %d, and Retry-After only with a 503", path, rsp.StatusCode, retry, c.status)
				}
			}
		})
	}
}

func TestConfiguredTitle(t *testing.T) {
	c, err := ParseConfig([]byte(`{"web": {"title": "Greetings & <co>"}}`))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(nil, time.Second, func() Config { return c }))
	defer srv.Close()
	rsp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	body, _ := io.ReadAll(rsp.Body)
	if !strings.Contains(string(body), "<title>Greetings &amp; &lt;co&gt;</title>") {
		t.Fatalf("the page does not show the configured title, escaped:\n%s", body)
	}
	for _, bad := range []string{`{"web": {"title": 7}}`, `{"web": {"title": "` + strings.Repeat("x", 101) + `"}}`, `[`} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("ParseConfig(%.30s) accepted it", bad)
		}
	}
}

// counterFunc is a Counter defined by a func.
type counterFunc func(ctx context.Context, name string) (uint64, error)

func (f counterFunc) Count(ctx context.Context, name string) (uint64, error) { return f(ctx, name) }

// The count shows under a greeting when the counter answers, and the
// greeting goes without it when the counter fails or is too slow.
func TestCounts(t *testing.T) {
	addr := serveGreeter(t, func(_ context.Context, req *greeterv1.HelloRequest, rsp *greeterv1.HelloResponse) error {
		rsp.Message = "Hello " + req.GetName()
		return nil
	})
	t.Setenv(k8s.EnvAddresses, greeterv1.ServiceName+"="+addr)
	greeter := greeterv1.NewGreeterService(greeterv1.ServiceName, k8s.NewService("web").Client())
	counter := counterFunc(func(ctx context.Context, name string) (uint64, error) {
		switch name {
		case "Ada":
			return 3, nil
		case "Slow":
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return 0, errors.InternalServerError("stats", "no count")
	})
	srv := httptest.NewServer(New(greeter, time.Second, nil, WithCounts(counter)))
	t.Cleanup(srv.Close)
	for name, want := range map[string]string{
		"Ada":  `{"message":"Hello Ada","greeted":3}`,
		"Bob":  `{"message":"Hello Bob"}`,
		"Slow": `{"message":"Hello Slow"}`,
	} {
		rsp, err := http.Get(srv.URL + "/greeter?name=" + name)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(rsp.Body)
		rsp.Body.Close()
		if rsp.StatusCode != 200 || strings.TrimSpace(string(body)) != want {
			t.Errorf("%s: %d %s, want 200 %s", name, rsp.StatusCode, body, want)
		}
	}
	rsp, err := http.Get(srv.URL + "/?name=Ada")
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	if page, _ := io.ReadAll(rsp.Body); !strings.Contains(string(page), "Ada has been greeted 3 times") {
		t.Errorf("the page does not say the count:\n%s", page)
	}
}
