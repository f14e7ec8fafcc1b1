package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go-micro.dev/v6"

	"github.com/micro/kubernetes/pkg/k8s"
	"github.com/micro/kubernetes/pkg/k8s/httpapi"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

// hello answers Greeter.Hello: a stand-in for the greeter, so that the load
// generator's tests need nothing outside its own module.
type hello struct{}

func (hello) Hello(_ context.Context, req *greeterv1.HelloRequest, rsp *greeterv1.HelloResponse) error {
	rsp.Message = "Hello " + req.GetName()
	return nil
}

// The load generator, built and run in both modes against real servers on
// loopback: HTTP against a JSON endpoint, RPC through the static selector.
func TestLoadgen(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "loadgen")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building loadgen: %v\n%s", err, out)
	}

	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"message": "Hello " + r.URL.Query().Get("name")})
	}))
	defer web.Close()
	svc := k8s.NewService(greeterv1.ServiceName, micro.Address("127.0.0.1:0"))
	if err := greeterv1.RegisterGreeterHandler(svc.Server(), hello{}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()

	for mode, args := range map[string][]string{
		"http": {"-url=" + web.URL + "/greeter?name=load"},
		"rpc":  {"-rpc=" + greeterv1.ServiceName},
	} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), bin, append(args, "-rate=0", "-workers=4", "-requests=200", "-wait=5s", "-json")...)
			cmd.Env = append(cmd.Environ(), k8s.EnvAddresses+"="+greeterv1.ServiceName+"="+svc.Server().Options().Address)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("loadgen: %v\n%s", err, out)
			}
			var r struct {
				Requests, Errors int
				Throughput       float64
				P99              int64 `json:"p99_ns"`
			}
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("loadgen's JSON: %v\n%s", err, out)
			}
			if r.Requests != 200 || r.Errors != 0 || r.Throughput <= 0 || r.P99 <= 0 {
				t.Fatalf("loadgen reported %+v, want 200 requests without error", r)
			}
		})
	}

	// A target that is not a URL is refused before any request.
	out, err := exec.CommandContext(t.Context(), bin, "-url=ftp://x", "-requests=1").CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), "is not an http(s) URL") {
		t.Fatalf("-url=ftp://x: exit %d, %s; want exit 2 and why", code, out)
	}
}

// exitCode is the exit status of a finished command.
func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// The HTTP requester reuses its connections: a new one per request would
// measure connection set-up, on both ends, instead of the target.
func TestHTTPRequestsReuseTheirConnection(t *testing.T) {
	var opened atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"message": "Hello"})
	}))
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	do, err := newRequester(srv.URL+"/greeter?name=x", "", "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := do(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if n := opened.Load(); n != 1 {
		t.Errorf("20 requests one after another opened %d connections, want 1", n)
	}
}

// A response cut short is a failed request, not a served one.
func TestHTTPResponseCutShortFails(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"message":`))
		w.(http.Flusher).Flush()    // the status and the first bytes reach the client,
		panic(http.ErrAbortHandler) // then the connection is closed mid-body
	}))
	defer srv.Close()

	do, err := newRequester(srv.URL+"/greeter?name=x", "", "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := do(t.Context()); err == nil {
		t.Error("a body cut short after 11 of 100 bytes counted as served")
	}
}
