package frontend

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"go-micro.dev/v6/errors"

	"github.com/micro/kubernetes/pkg/k8s"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

// FuzzFrontend sends any request line to the frontend, which calls a real
// gRPC greeter: whatever it is, the answer is one of the documented statuses
// (never a 500), errors are JSON, and the page never echoes markup.
func FuzzFrontend(f *testing.F) {
	for _, seed := range [][2]string{
		{"GET", "/greeter?name=Alice"}, {"GET", "/?name=%3Cscript%3Ealert(1)%3C%2Fscript%3E"},
		{"GET", "/greeter?name=%zz"}, {"GET", "/greeter?name=a&name=b"}, {"GET", "/greeter?name=%ff"},
		{"POST", "/greeter"}, {"GET", "/static/app.js"}, {"GET", "/static/../main.go"}, {"HEAD", "/"},
		{"GET", "/health"}, {"OPTIONS", "*"}, {"GET", "/greeter?name=" + strings.Repeat("x", 200)},
	} {
		f.Add(seed[0], seed[1])
	}
	addr := serveGreeter(f, func(_ context.Context, req *greeterv1.HelloRequest, rsp *greeterv1.HelloResponse) error {
		if req.Name == "" || len(req.Name) > 100 {
			return errors.BadRequest("greeter", "bad name")
		}
		rsp.Message = "Hello " + req.Name
		return nil
	})
	f.Setenv(k8s.EnvAddresses, greeterv1.ServiceName+"="+addr)
	h := New(greeterv1.NewGreeterService(greeterv1.ServiceName, k8s.NewService("web").Client()), 2*time.Second, nil)
	// 301, 307, 308: net/http redirecting to a cleaned path.
	allowed := []int{200, 301, 307, 308, 400, 404, 405, 413, 502, 503, 504}

	f.Fuzz(func(t *testing.T, method, target string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(method + " " + target + " HTTP/1.1\r\nHost: web\r\n\r\n")))
		if err != nil {
			return // net/http's server answers 400 before any handler
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if !slices.Contains(allowed, w.Code) {
			t.Fatalf("%s %q: status %d", method, target, w.Code)
		}
		body := w.Body.String()
		if w.Code >= 400 && method != "HEAD" && strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
			var e map[string]string
			if json.Unmarshal(w.Body.Bytes(), &e) != nil || e["error"] == "" {
				t.Fatalf("%s %q: %d with body %q, want {\"error\": ...}", method, target, w.Code, body)
			}
		}
		if strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") && strings.Count(body, "<script") > 1 {
			t.Fatalf("%s %q: the page echoes markup:\n%s", method, target, body)
		}
	})
}
