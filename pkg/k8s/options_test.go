package k8s

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go-micro.dev/v6"
	"go-micro.dev/v6/client"
	grpcclient "go-micro.dev/v6/client/grpc"
	debugpb "go-micro.dev/v6/debug/proto"
	merrors "go-micro.dev/v6/errors"
	meta "go-micro.dev/v6/metadata"
	"go-micro.dev/v6/registry"
	"go-micro.dev/v6/selector"
	"go-micro.dev/v6/server"
	grpcserver "go-micro.dev/v6/server/grpc"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Opts answers what the options tests look at.
type Opts struct{ failures *atomic.Int32 }

// UserAgent answers the caller's user-agent header.
func (Opts) UserAgent(ctx context.Context, _ *debugpb.HealthRequest, rsp *debugpb.HealthResponse) error {
	md, _ := meta.FromContext(ctx)
	rsp.Status = md["user-agent"]
	return nil
}

// Echo answers the request's service, so a long one makes a long reply.
func (Opts) Echo(_ context.Context, req *debugpb.HealthRequest, rsp *debugpb.HealthResponse) error {
	rsp.Status = req.GetService()
	return nil
}

// Flaky fails with the code the request names until it has failed twice.
func (o Opts) Flaky(_ context.Context, req *debugpb.HealthRequest, rsp *debugpb.HealthResponse) error {
	if o.failures.Add(1) <= 2 {
		code := int32(408)
		if req.GetService() == "500" {
			code = 500
		}
		return merrors.New("opts", "not yet", code)
	}
	rsp.Status = "ok"
	return nil
}

// optsServer starts a pkg/k8s service serving Opts, with extra server
// options set before it starts, and returns its address and handler.
func optsServer(t *testing.T, opts ...server.Option) (string, Opts) {
	t.Helper()
	h := Opts{failures: new(atomic.Int32)}
	svc := NewService("opts", micro.Address("127.0.0.1:0"))
	if err := svc.Server().Init(opts...); err != nil {
		t.Fatal(err)
	}
	if err := svc.Server().Handle(svc.Server().NewHandler(h)); err != nil {
		t.Fatal(err)
	}
	serve(t, svc)
	return svc.Server().Options().Address, h
}

// stockClient is go-micro's own gRPC client, without multicast.
func stockClient(opts ...client.Option) client.Client {
	reg := registry.NewMemoryRegistry()
	return grpcclient.NewClient(append([]client.Option{client.Registry(reg), client.Selector(selector.NewSelector(selector.Registry(reg)))}, opts...)...)
}

func callOpts(c client.Client, addr, endpoint, service string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var rsp debugpb.HealthResponse
	err := c.Call(ctx, c.NewRequest("opts", endpoint, &debugpb.HealthRequest{Service: service}), &rsp, client.WithAddress(addr))
	return rsp.Status, err
}

// selfSigned is a TLS certificate for 127.0.0.1, and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "opts"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// AuthTLS works as go-micro's: a client given it calls a TLS server over
// TLS and fails against plain text; one without it fails against TLS.
func TestAuthTLSIsHonoured(t *testing.T) {
	cert, pool := selfSigned(t)
	secure, _ := optsServer(t, grpcserver.AuthTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	plain, _ := optsServer(t)
	withTLS := grpcclient.AuthTLS(&tls.Config{RootCAs: pool})
	for _, c := range []struct {
		name   string
		client client.Client
	}{{"go-micro's client", stockClient(withTLS)}, {"pkg/k8s's client", NewClient(withTLS)}} {
		if got, err := callOpts(c.client, secure, "Opts.Echo", "over TLS"); err != nil || got != "over TLS" {
			t.Errorf("%s with AuthTLS, to the TLS server: %q %v", c.name, got, err)
		}
		if _, err := callOpts(c.client, plain, "Opts.Echo", "x"); err == nil {
			t.Errorf("%s with AuthTLS, to a plain-text server: succeeded; the call went out in plain text", c.name)
		}
	}
	for _, c := range []struct {
		name   string
		client client.Client
	}{{"go-micro's client", stockClient()}, {"pkg/k8s's client", NewClient()}} {
		if _, err := callOpts(c.client, secure, "Opts.Echo", "x"); err == nil {
			t.Errorf("%s without AuthTLS, to the TLS server: succeeded", c.name)
		}
	}
}

// countingCodec is a JSON codec for gRPC that counts the messages it
// writes.
type countingCodec struct{ writes *atomic.Int32 }

func (c countingCodec) Marshal(v any) ([]byte, error) {
	c.writes.Add(1)
	return protojson.Marshal(v.(proto.Message))
}
func (countingCodec) Unmarshal(b []byte, v any) error {
	return protojson.Unmarshal(b, v.(proto.Message))
}
func (countingCodec) Name() string { return "json" }

// go-micro's gRPC client options take effect on pkg/k8s's client as on
// go-micro's: message bounds, dial options, codecs, retries.
func TestGRPCClientOptionsAreHonoured(t *testing.T) {
	addr, _ := optsServer(t)
	long := strings.Repeat("x", 64)
	for _, c := range []struct {
		name string
		new  func(...client.Option) client.Client
	}{{"go-micro's client", stockClient}, {"pkg/k8s's client", NewClient}} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := callOpts(c.new(grpcclient.MaxRecvMsgSize(32)), addr, "Opts.Echo", long); err == nil {
				t.Error("MaxRecvMsgSize(32) let a 66-byte reply in")
			}
			if _, err := callOpts(c.new(grpcclient.MaxSendMsgSize(32)), addr, "Opts.Echo", long); err == nil {
				t.Error("MaxSendMsgSize(32) let a 66-byte request out")
			}
			agent := func(o *client.Options) {
				grpcclient.DialOptions(grpc.WithUserAgent("forker/1.0"))(&o.CallOptions)
			}
			if got, err := callOpts(c.new(agent), addr, "Opts.UserAgent", ""); err != nil || !strings.HasPrefix(got, "forker/1.0") {
				t.Errorf("DialOptions(WithUserAgent): the server saw user-agent %q (%v)", got, err)
			}
			writes := new(atomic.Int32)
			json := c.new(grpcclient.Codec("application/json", countingCodec{writes}))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var rsp debugpb.HealthResponse
			req := json.NewRequest("opts", "Opts.Echo", &debugpb.HealthRequest{Service: "Ada"}, client.WithContentType("application/json"))
			if err := json.Call(ctx, req, &rsp, client.WithAddress(addr)); err != nil || rsp.Status != "Ada" || writes.Load() != 1 {
				t.Errorf("Codec: %q %v, and the codec wrote %d messages, want 1", rsp.Status, err, writes.Load())
			}
		})
	}
}

// Retries and Retry are go-micro's: pkg/k8s's default of none fails at
// the first 408; Retries(2) gets through two; a Retry func decides which
// errors are retried (go-micro's own retries only 408).
func TestRetriesAreHonoured(t *testing.T) {
	always := func(context.Context, client.Request, int, error) (bool, error) { return true, nil }
	for _, c := range []struct {
		name, code string
		opts       []client.Option
		ok         bool
	}{
		{"pkg/k8s's default", "408", nil, false},
		{"Retries(2)", "408", []client.Option{client.Retries(2)}, true},
		{"Retries(2), a 500", "500", []client.Option{client.Retries(2)}, false},
		{"Retries(2) and a Retry that retries anything, a 500", "500", []client.Option{client.Retries(2), client.Retry(always)}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, _ := optsServer(t)
			got, err := callOpts(NewClient(c.opts...), addr, "Opts.Flaky", c.code)
			if ok := err == nil && got == "ok"; ok != c.ok {
				t.Errorf("%q %v, want success %v", got, err, c.ok)
			}
		})
	}
}

// Every option that the fast path does not implement is named, and sends
// calls to go-micro's client; pkg/k8s's defaults name none.
func TestOptionsTheFastPathDoesNotImplement(t *testing.T) {
	base := NewClient().(*fastClient).base
	if got := unhonoured(base, base); got != "" {
		t.Fatalf("pkg/k8s's defaults: %q", got)
	}
	for name, opt := range map[string]client.Option{
		"AuthTLS": grpcclient.AuthTLS(&tls.Config{}), "Codec": grpcclient.Codec("application/x", countingCodec{}),
		"MaxRecvMsgSize": grpcclient.MaxRecvMsgSize(1), "MaxSendMsgSize": grpcclient.MaxSendMsgSize(1),
		"PoolMaxStreams": grpcclient.PoolMaxStreams(1), "PoolMaxIdle": grpcclient.PoolMaxIdle(1),
		"PoolSize": client.PoolSize(1), "PoolTTL": client.PoolTTL(time.Second),
		"Retries": client.Retries(1), "DialTimeout": client.DialTimeout(time.Second),
		"Backoff":     client.Backoff(func(context.Context, client.Request, int) (time.Duration, error) { return 0, nil }),
		"Retry":       client.Retry(func(context.Context, client.Request, int, error) (bool, error) { return false, nil }),
		"DialOptions": func(o *client.Options) { grpcclient.DialOptions()(&o.CallOptions) },
		"CallOptions": func(o *client.Options) { grpcclient.CallOptions()(&o.CallOptions) },
	} {
		c := NewClient(opt).(*fastClient)
		if c.stock == "" || !strings.Contains(c.stock, name) {
			t.Errorf("%s: the client takes the fast path (%q), want go-micro's, named", name, c.stock)
		}
	}
	// The server: a gRPC option of go-micro's server or a router sends
	// every call to go-micro's; pkg/k8s's own options keep the fast path.
	for name, opt := range map[string]server.Option{
		"no option":  server.Name("opts"),
		"AuthTLS":    grpcserver.AuthTLS(&tls.Config{}),
		"Codec":      grpcserver.Codec("application/grpc+json", countingCodec{}),
		"WithRouter": server.WithRouter(router{}),
	} {
		svc := NewService("opts")
		if err := svc.Server().Init(opt); err != nil {
			t.Fatal(err)
		}
		fast := svc.Server().(*fastServer).lookup("Debug", "Health") != nil
		if fast != (name == "no option") {
			t.Errorf("server with %s: fast path %v", name, fast)
		}
	}
	for addr, tls := range map[string]bool{"greeter:8080": false, "127.0.0.1:8080": false, "greeter:443": true, "greeter": true, "https://greeter": true} {
		if got := dialsTLS(&registry.Node{Address: addr}); got != tls {
			t.Errorf("dialsTLS(%q) = %v, want %v (as go-micro's client dials it)", addr, got, tls)
		}
	}
}

// A client made by NewClient has no start to fail: a MICRO_FAST_PATHS that
// is not a boolean fails each of its calls, naming the variable.
func TestNewClientRefusesABadSwitch(t *testing.T) {
	addr, _ := optsServer(t)
	t.Setenv(EnvFastPaths, "maybe")
	if _, err := callOpts(NewClient(), addr, "Opts.Echo", "x"); err == nil || !strings.Contains(err.Error(), EnvFastPaths) {
		t.Errorf("a call with %s=maybe: %v, want an error naming it", EnvFastPaths, err)
	}
}
