package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"go-micro.dev/v6"
	"go-micro.dev/v6/client"
	"go-micro.dev/v6/codec/bytes"
	debugpb "go-micro.dev/v6/debug/proto"
	merrors "go-micro.dev/v6/errors"
	"go-micro.dev/v6/registry"
	"go-micro.dev/v6/selector"
	"go-micro.dev/v6/web"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// TestMain doubles as a tiny service binary: go-micro parses os.Args and
// exits on a bad flag, so flag behaviour is tested in a child process.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("K8S_TEST_CHILD"); ok {
		runChild(strings.Fields(args))
		return
	}
	os.Exit(m.Run())
}

type childReport struct {
	Selector, Address, Client, Registry string
	Retries                             int
	Fast                                bool // the client takes the fast path
	FastServer                          bool // the server serves Debug.Health on its fast path
}

func runChild(args []string) {
	var opts []micro.Option
	if os.Getenv("K8S_TEST_CHILD_SELECTOR") == "registry" {
		opts = append(opts, micro.Selector(selector.NewSelector()))
	}
	os.Args = append([]string{"child"}, args...)
	svc := NewService("child", opts...)
	svc.Init()
	_ = json.NewEncoder(os.Stdout).Encode(childReport{
		Selector:   svc.Client().Options().Selector.String(),
		Address:    svc.Server().Options().Address,
		Client:     svc.Client().String(),
		Registry:   svc.Options().Registry.String(),
		Retries:    svc.Client().Options().CallOptions.Retries,
		Fast:       svc.Client().(*fastClient).on.Load() && svc.Client().(*fastClient).stock == "",
		FastServer: svc.Server().(*fastServer).lookup("Debug", "Health") != nil,
	})
}

func child(t *testing.T, args string, env ...string) (childReport, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), append(env, "K8S_TEST_CHILD="+args)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return childReport{}, &exec.ExitError{ProcessState: cmd.ProcessState, Stderr: out}
	}
	var r childReport
	if err := json.Unmarshal(out[strings.LastIndexByte(strings.TrimSpace(string(out)), '\n')+1:], &r); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	return r, nil
}

func TestNewServiceDefaults(t *testing.T) {
	svc := NewService("greeter")
	o := svc.Options()
	checks := map[string][2]string{
		"server":   {svc.Server().String(), "grpc"},
		"client":   {svc.Client().String(), "grpc"},
		"selector": {svc.Client().Options().Selector.String(), "static"},
		"registry": {o.Registry.String(), "memory"},
		"broker":   {o.Broker.String(), "memory"},
		"address":  {svc.Server().Options().Address, "0.0.0.0:8080"},
		"name":     {svc.Server().Options().Name, "greeter"},
	}
	for what, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", what, c[0], c[1])
		}
	}
	if got := svc.Client().Options().Registry.String(); got != "memory" {
		t.Errorf("client registry = %q, want memory (no multicast)", got)
	}
}

func TestNewServiceCallerOptionsWin(t *testing.T) {
	reg := registry.NewMemoryRegistry()
	sel := selector.NewSelector(selector.Registry(reg))
	svc := NewService("greeter",
		micro.Address("127.0.0.1:0"),
		micro.Selector(sel),
		micro.Name("renamed"),
	)
	if got := svc.Server().Options().Address; got != "127.0.0.1:0" {
		t.Errorf("address = %q, want the caller's 127.0.0.1:0", got)
	}
	if got := svc.Client().Options().Selector; got != sel {
		t.Errorf("selector = %v, want the caller's", got)
	}
	if got := svc.Server().Options().Name; got != "renamed" {
		t.Errorf("name = %q, want the caller's", got)
	}
}

func TestDebugHealthIsServed(t *testing.T) {
	svc := NewService("greeter", micro.Address("127.0.0.1:0"))
	serve(t, svc)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rsp, err := debugpb.NewDebugService("greeter", svc.Client()).Health(ctx, &debugpb.HealthRequest{},
		client.WithAddress(svc.Server().Options().Address))
	if err != nil {
		t.Fatalf("Debug.Health: %v", err)
	}
	if rsp.Status != "ok" {
		t.Fatalf("Debug.Health status = %q, want ok", rsp.Status)
	}
	// Only Health is exposed of go-micro's Debug service.
	err = svc.Client().Call(ctx, svc.Client().NewRequest("greeter", "Debug.Stats", &debugpb.StatsRequest{}),
		&debugpb.StatsResponse{}, client.WithAddress(svc.Server().Options().Address))
	if err == nil {
		t.Fatal("Debug.Stats answered; only Debug.Health should be registered")
	}
}

func TestFlagsAndEnvironment(t *testing.T) {
	cases := []struct {
		name, args      string
		env             []string
		want            childReport
		wantErrContains string
	}{
		{name: "defaults", want: childReport{Selector: "static", Address: "0.0.0.0:8080", Client: "grpc", Registry: "memory", Fast: true, FastServer: true}},
		{name: "--server_address", args: "--server_address=127.0.0.1:9999", want: childReport{Selector: "static", Address: "127.0.0.1:9999", Client: "grpc", Registry: "memory", Fast: true, FastServer: true}},
		{name: "MICRO_SERVER_ADDRESS", env: []string{"MICRO_SERVER_ADDRESS=127.0.0.1:9998"}, want: childReport{Selector: "static", Address: "127.0.0.1:9998", Client: "grpc", Registry: "memory", Fast: true, FastServer: true}},
		{name: "--selector=static over a caller's selector", args: "--selector=static", env: []string{"K8S_TEST_CHILD_SELECTOR=registry"}, want: childReport{Selector: "static", Address: "0.0.0.0:8080", Client: "grpc", Registry: "memory", Fast: true, FastServer: true}},
		{name: "MICRO_SELECTOR=static over a caller's selector", env: []string{"MICRO_SELECTOR=static", "K8S_TEST_CHILD_SELECTOR=registry"}, want: childReport{Selector: "static", Address: "0.0.0.0:8080", Client: "grpc", Registry: "memory", Fast: true, FastServer: true}},
		{name: "caller's selector kept without the flag", env: []string{"K8S_TEST_CHILD_SELECTOR=registry"}, want: childReport{Selector: "registry", Address: "0.0.0.0:8080", Client: "grpc", Registry: "memory", Fast: true, FastServer: true}},
		{name: "unknown selector", args: "--selector=nope", wantErrContains: "Selector nope not found"},
		{name: "--client_retries", args: "--client_retries=2", want: childReport{Selector: "static", Address: "0.0.0.0:8080", Client: "grpc", Registry: "memory", Retries: 2, FastServer: true}},
		{name: "--fast_paths=false", args: "--fast_paths=false", want: childReport{Selector: "static", Address: "0.0.0.0:8080", Client: "grpc", Registry: "memory"}},
		{name: "MICRO_FAST_PATHS=false", env: []string{"MICRO_FAST_PATHS=false"}, want: childReport{Selector: "static", Address: "0.0.0.0:8080", Client: "grpc", Registry: "memory"}},
		{name: "MICRO_FAST_PATHS=maybe", env: []string{"MICRO_FAST_PATHS=maybe"}, wantErrContains: "MICRO_FAST_PATHS"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := child(t, c.args, c.env...)
			if c.wantErrContains != "" {
				var ee *exec.ExitError
				if err == nil {
					t.Fatalf("child succeeded with %q, want an error", c.args)
				}
				if errors.As(err, &ee) && !strings.Contains(string(ee.Stderr), c.wantErrContains) {
					t.Fatalf("child output %q does not contain %q", ee.Stderr, c.wantErrContains)
				}
				return
			}
			if err != nil {
				t.Fatalf("child: %v: %s", err, err.(*exec.ExitError).Stderr)
			}
			if got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestNewWebServiceDefaults(t *testing.T) {
	svc := NewWebService("web")
	o := svc.Options()
	if o.Address != "0.0.0.0:8080" {
		t.Errorf("address = %q, want 0.0.0.0:8080", o.Address)
	}
	if o.Name != "web" {
		t.Errorf("name = %q, want web", o.Name)
	}
	c := o.Service.Client()
	if c.String() != "grpc" || c.Options().Selector.String() != "static" {
		t.Errorf("client = %s with selector %s, want grpc with static", c.String(), c.Options().Selector.String())
	}
	s := o.Server
	if s == nil || s.ReadHeaderTimeout == 0 || s.ReadTimeout == 0 || s.WriteTimeout == 0 || s.IdleTimeout == 0 || s.MaxHeaderBytes == 0 {
		t.Errorf("HTTP server %+v lacks a timeout or header limit", s)
	}
}

// A service runs gRPC calls on stream workers; a web service's gRPC server
// never serves, so it starts none (go-micro builds several gRPC servers as
// a service starts, and each would start its own).
func TestStreamWorkersOnlyWhereGRPCServes(t *testing.T) {
	added := func(build func()) int {
		before := runtime.NumGoroutine()
		build()
		return runtime.NumGoroutine() - before
	}
	if n := added(func() { NewService("greeter", micro.Address("127.0.0.1:0")) }); n < streamWorkers {
		t.Errorf("NewService started %d goroutines, want at least its %d stream workers", n, streamWorkers)
	}
	if n := added(func() { NewWebService("web", web.Address("127.0.0.1:0")) }); n >= streamWorkers {
		t.Errorf("NewWebService started %d goroutines, want fewer than one gRPC server's %d stream workers", n, streamWorkers)
	}
}

func TestNewWebServiceCallerOptionsWin(t *testing.T) {
	svc := NewWebService("web", web.Address("127.0.0.1:0"), web.Name("front"))
	if got := svc.Options().Address; got != "127.0.0.1:0" {
		t.Errorf("address = %q, want the caller's", got)
	}
	if got := svc.Options().Name; got != "front" {
		t.Errorf("name = %q, want the caller's", got)
	}
}

// rawCodec sends bytes as they are, to put on the wire what no protobuf
// library would encode. Its name makes the server decode them as protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

func TestUndecodableRequestIsInvalidArgument(t *testing.T) {
	svc := NewService("greeter", micro.Address("127.0.0.1:0"))
	serve(t, svc)
	cc := dial(t, svc.Server().Options().Address)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// HealthRequest field 1 (service, a string) holding the byte 0xff.
	notUTF8 := []byte{0x0a, 0x01, 0xff}
	var out []byte
	err := cc.Invoke(ctx, "/greeter.Debug/Health", notUTF8, &out, grpc.ForceCodec(rawCodec{}))
	if got := status.Code(err); got != codes.InvalidArgument {
		t.Fatalf("code = %v (%v), want InvalidArgument", got, err)
	}
}

// A go-micro request with a JSON content type travels as JSON: a body of
// raw JSON bytes (what a gateway forwards) reaches the handler decoded, and
// its reply comes back as JSON; JSON that does not decode is the caller's
// error, InvalidArgument (400), not Internal.
func TestJSONRequests(t *testing.T) {
	svc := NewService("faults", micro.Address("127.0.0.1:0"))
	if err := svc.Server().Handle(svc.Server().NewHandler(Faults{})); err != nil {
		t.Fatal(err)
	}
	serve(t, svc)
	c := NewClient()
	call := func(body string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req := c.NewRequest("faults", "Faults.Echo", &bytes.Frame{Data: []byte(body)}, client.WithContentType("application/json"))
		var rsp bytes.Frame
		err := c.Call(ctx, req, &rsp, client.WithAddress(svc.Server().Options().Address))
		return string(rsp.Data), err
	}
	if got, err := call(`{"service":"Ada"}`); err != nil || got != `{"status":"Ada"}` {
		t.Errorf(`{"service":"Ada"}: %s %v, want {"status":"Ada"}`, got, err)
	}
	for _, body := range []string{`{"service":`, `{"nope":1}`, `{"service":7}`, `[]`} {
		if _, err := call(body); merrors.FromError(err).Code != 400 {
			t.Errorf("%s: %v, want 400", body, err)
		}
	}
}

func TestWebServiceDrainsInFlightRequests(t *testing.T) {
	svc := NewWebService("web", web.Address("127.0.0.1:0"))
	entered := make(chan struct{})
	svc.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		time.Sleep(300 * time.Millisecond)
		_, _ = w.Write([]byte("done"))
	})
	if err := svc.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	url := "http://" + svc.Options().Address + "/slow"

	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		rsp, err := http.Get(url)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer rsp.Body.Close()
		b, err := io.ReadAll(rsp.Body)
		got <- result{string(b), err}
	}()
	<-entered
	if err := svc.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if r := <-got; r.err != nil || r.body != "done" {
		t.Fatalf("in-flight request got %q, %v; want it to finish", r.body, r.err)
	}
	if _, err := http.Get(url); err == nil {
		t.Fatal("the stopped service still accepts requests")
	}
}

func TestNewClientDefaults(t *testing.T) {
	c := NewClient()
	if c.String() != "grpc" || c.Options().Selector.String() != "static" || c.Options().Registry.String() != "memory" {
		t.Errorf("client %s with selector %s and registry %s, want grpc, static, memory",
			c.String(), c.Options().Selector.String(), c.Options().Registry.String())
	}
	sel := selector.NewSelector()
	if got := NewClient(client.Selector(sel)).Options().Selector; got != sel {
		t.Error("the caller's selector lost to the default")
	}
}

func TestStandardGRPCHealth(t *testing.T) {
	svc := NewService("greeter", micro.Address("127.0.0.1:0"))
	serve(t, svc)
	cc := dial(t, svc.Server().Options().Address)
	health := healthpb.NewHealthClient(cc)
	check := func(service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rsp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		return rsp.GetStatus(), err
	}

	for _, service := range []string{"", "greeter"} {
		if got, err := check(service); err != nil || got != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, %v; want SERVING", service, got, err)
		}
	}
	if _, err := check("other"); status.Code(err) != codes.NotFound {
		t.Errorf("Check(other) = %v, want NotFound", err)
	}
	// Stopping starts with the BeforeStop hooks: the first one flips it.
	if err := svc.Options().BeforeStop[0](); err != nil {
		t.Fatal(err)
	}
	if got, err := check(""); err != nil || got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("stopping: Check = %v, %v; want NOT_SERVING", got, err)
	}
}

// startStopper is a go-micro service, gRPC or web.
type startStopper interface {
	Start() error
	Stop() error
}

// serve starts a service for the rest of the test.
func serve(t *testing.T, svc startStopper) {
	t.Helper()
	if err := svc.Start(); err != nil {
		t.Fatalf("starting the service: %v", err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
}

// dial is a plain grpc-go client (no go-micro) of addr, for the rest of the
// test.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}
