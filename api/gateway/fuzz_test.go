package gateway

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzGateway sends any method, path and body to the gateway, which calls a
// real gRPC greeter: whatever they are, the answer is one of the documented
// statuses (never a 500), and every error is a JSON body.
func FuzzGateway(f *testing.F) {
	for _, seed := range [][3]string{
		{"POST", "/greeter/Greeter.Hello", `{"name":"Ada"}`}, {"POST", "/greeter/Greeter.Hello", `{"name":""}`},
		{"POST", "/greeter/Greeter.Hello", `{"name":"\xff"}`}, {"POST", "/greeter/Greeter.Hello", `{"name":"Ada","x":1}`},
		{"POST", "/greeter/Greeter.Hello", `[1]`}, {"POST", "/greeter/Greeter.Hello", `{"name":`},
		{"POST", "/greeter/Debug.Health", `{}`}, {"GET", "/greeter/Greeter.Hello", ``},
		{"POST", "/greeter/Greeter.Hello/../Debug.Health", `{}`}, {"POST", "/%2e%2e/x", `{}`},
		{"GET", "/health", ``}, {"OPTIONS", "*", ``}, {"POST", "/greeter/Greeter.Hello", `{"name":"` + strings.Repeat("x", 200) + `"}`},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	h := gatewayTo(f, serveGreeter(f, hello), 2*time.Second)
	// 301, 307, 308: net/http redirecting to a cleaned path.
	allowed := []int{200, 301, 307, 308, 400, 404, 405, 413, 502, 503, 504}

	f.Fuzz(func(t *testing.T, method, target, body string) {
		raw := method + " " + target + " HTTP/1.1\r\nHost: api\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // net/http's server answers 400 before any handler
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if !slices.Contains(allowed, w.Code) {
			t.Fatalf("%s %q %q: status %d %s", method, target, body, w.Code, w.Body)
		}
		if w.Code >= 400 && method != "HEAD" {
			var e map[string]string
			if json.Unmarshal(w.Body.Bytes(), &e) != nil || e["error"] == "" {
				t.Fatalf("%s %q %q: %d with body %q, want {\"error\": ...}", method, target, body, w.Code, w.Body)
			}
		}
	})
}
