package k8s

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go-micro.dev/v6"
	"go-micro.dev/v6/broker"
	"go-micro.dev/v6/client"
	grpcclient "go-micro.dev/v6/client/grpc"
	"go-micro.dev/v6/codec/bytes"
	debugpb "go-micro.dev/v6/debug/proto"
	merrors "go-micro.dev/v6/errors"
	meta "go-micro.dev/v6/metadata"
	"go-micro.dev/v6/registry"
	"go-micro.dev/v6/server"
	grpcserver "go-micro.dev/v6/server/grpc"
	"google.golang.org/grpc"
	gmetadata "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The conformance suite: one table of calls, made by every client against
// every server, go-micro's own and pkg/k8s's (with its fast paths on and
// off), and by a plain grpc-go client against each server. Each result is
// compared with go-micro's own client against go-micro's own server (the
// plain client's with the plain client against go-micro's server). A
// result that differs must be listed in docs/design.md's table of
// differences, and every row of that table must still differ somewhere.

// Conf is the handler every server of the suite serves.
type Conf struct{}

// Echo answers the request's service, and the metadata the handler sees:
// every key (values vary with the caller), and the values of x- keys.
func (Conf) Echo(ctx context.Context, req *debugpb.HealthRequest, rsp *debugpb.HealthResponse) error {
	rsp.Status = req.GetService()
	if req.GetService() != "metadata" {
		return nil
	}
	md, _ := meta.FromContext(ctx)
	var keys []string
	for k, v := range md {
		if strings.HasPrefix(strings.ToLower(k), "x-") {
			k += "=" + v
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	rsp.Status = strings.Join(keys, " ")
	return grpc.SetHeader(ctx, gmetadata.Pairs("x-reply", "from the handler"))
}

// protoError is an error that is also a protobuf message.
type protoError struct{ *debugpb.HealthResponse }

func (e protoError) Error() string { return "proto error " + e.Status }

// Fail fails as the request's service says.
func (Conf) Fail(_ context.Context, req *debugpb.HealthRequest, _ *debugpb.HealthResponse) error {
	const id = "conf"
	switch req.GetService() {
	case "BadRequest":
		return merrors.BadRequest(id, "bad %s", "input")
	case "Unauthorized":
		return merrors.Unauthorized(id, "who are you")
	case "Forbidden":
		return merrors.Forbidden(id, "not you")
	case "NotFound":
		return merrors.NotFound(id, "no such thing")
	case "MethodNotAllowed":
		return merrors.MethodNotAllowed(id, "not like that")
	case "Timeout":
		return merrors.Timeout(id, "too slow")
	case "Conflict":
		return merrors.Conflict(id, "already there")
	case "InternalServerError":
		return merrors.InternalServerError(id, "broken")
	case "custom code":
		return merrors.New(id, "I'm a teapot", 418)
	case "code 200":
		return merrors.New(id, "fine", 200)
	case "a wrapped go-micro error":
		return fmt.Errorf("while looking: %w", merrors.NotFound(id, "no such thing"))
	case "plain error":
		return errors.New("plain failure")
	case "context.DeadlineExceeded":
		return context.DeadlineExceeded
	case "proto.Message error":
		return protoError{&debugpb.HealthResponse{Status: "inside"}}
	case "panic":
		panic("boom")
	}
	return nil
}

// Deadline answers how far away the handler's deadline is, roughly.
func (Conf) Deadline(ctx context.Context, _ *debugpb.HealthRequest, rsp *debugpb.HealthResponse) error {
	d, ok := ctx.Deadline()
	switch {
	case !ok:
		rsp.Status = "no deadline"
	case time.Until(d) < time.Second:
		rsp.Status = "deadline under 1s"
	default:
		rsp.Status = "deadline over 1s"
	}
	return nil
}

// Sleep waits for the call to end.
func (Conf) Sleep(ctx context.Context, _ *debugpb.HealthRequest, _ *debugpb.HealthResponse) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
		return nil
	}
}

// Stream answers each request of the stream with its service.
func (Conf) Stream(_ context.Context, stream server.Stream) error {
	var req debugpb.HealthRequest
	if err := stream.Recv(&req); err != nil {
		return err
	}
	return stream.Send(&debugpb.HealthResponse{Status: req.GetService()})
}

// wrapReads changes a request it recognises before the handler, and the
// reply after it.
func wrapReads(next server.HandlerFunc) server.HandlerFunc {
	return func(ctx context.Context, req server.Request, rsp any) error {
		in, ok := req.Body().(*debugpb.HealthRequest)
		if !ok || !strings.HasPrefix(in.GetService(), "wrap:") {
			return next(ctx, req, rsp)
		}
		in.Service = strings.TrimPrefix(in.Service, "wrap:") + " (changed by " + req.Endpoint() + "'s wrapper)"
		err := next(ctx, req, rsp)
		if out, ok := rsp.(*debugpb.HealthResponse); ok {
			out.Status += " (and the reply)"
		}
		return err
	}
}

func wrapLate(next server.HandlerFunc) server.HandlerFunc {
	return func(ctx context.Context, req server.Request, rsp any) error {
		err := next(ctx, req, rsp)
		if out, ok := rsp.(*debugpb.HealthResponse); ok {
			out.Status += " (late wrapper)"
		}
		return err
	}
}

// router answers every call itself.
type router struct{}

func (router) ProcessMessage(context.Context, string, server.Message) error { return nil }
func (router) ServeRequest(_ context.Context, req server.Request, _ server.Response) error {
	return merrors.New("router", "routed "+req.Endpoint(), 418)
}

// conformanceCase is a call of the table, as a go-micro client makes it, as
// a plain gRPC client makes it, or both; setup, if any, changes the server
// first (such cases come last: the server keeps the change).
type conformanceCase struct {
	name  string
	setup func(server.Server) error
	micro func(ctx context.Context, c client.Client, addr string) string
	plain func(ctx context.Context, cc *grpc.ClientConn) string
}

// outcome is a go-micro call's result as the suite compares it.
func outcome(ok string, err error) string {
	if err == nil {
		return "ok: " + ok
	}
	e := merrors.FromError(err)
	return fmt.Sprintf("error %d from %s: %s", e.Code, e.Id, e.Detail)
}

// plainOutcome is a plain gRPC call's result, with the go-micro error its
// status carries, if any.
func plainOutcome(ok string, err error) string {
	if err == nil {
		return "ok: " + ok
	}
	s := status.Convert(err)
	out := fmt.Sprintf("status %s: %s", s.Code(), s.Message())
	for _, d := range s.Details() {
		if e, isMicro := d.(*merrors.Error); isMicro {
			out += fmt.Sprintf(" (detail: go-micro error %d from %s: %s)", e.Code, e.Id, e.Detail)
		} else {
			out += fmt.Sprintf(" (detail: %T)", d)
		}
	}
	return out
}

func call(endpoint, service string, opts ...client.CallOption) func(context.Context, client.Client, string) string {
	return func(ctx context.Context, c client.Client, addr string) string {
		var rsp debugpb.HealthResponse
		err := c.Call(ctx, c.NewRequest("conf", endpoint, &debugpb.HealthRequest{Service: service}), &rsp,
			append(opts, client.WithAddress(addr))...)
		return outcome(rsp.Status, err)
	}
}

func plainCall(method, service string, opts ...grpc.CallOption) func(context.Context, *grpc.ClientConn) string {
	return func(ctx context.Context, cc *grpc.ClientConn) string {
		var rsp debugpb.HealthResponse
		err := cc.Invoke(ctx, "/conf."+method, &debugpb.HealthRequest{Service: service}, &rsp, opts...)
		return plainOutcome(rsp.Status, err)
	}
}

func conformanceCases() []conformanceCase {
	cases := []conformanceCase{
		{name: "success", micro: call("Conf.Echo", "Ada"), plain: plainCall("Conf/Echo", "Ada")},
	}
	for _, fault := range []string{"BadRequest", "Unauthorized", "Forbidden", "NotFound", "MethodNotAllowed", "Timeout",
		"Conflict", "InternalServerError", "custom code", "code 200", "a wrapped go-micro error", "plain error",
		"context.DeadlineExceeded", "panic"} {
		cases = append(cases, conformanceCase{name: "error: " + fault, micro: call("Conf.Fail", fault), plain: plainCall("Conf/Fail", fault)})
	}
	cases = append(cases,
		// go-micro's client panics, in a goroutine of its own, on the
		// status go-micro's server sends for this error: the plain client
		// shows what travels.
		conformanceCase{name: "error: proto.Message error", plain: plainCall("Conf/Fail", "proto.Message error")},
		conformanceCase{
			name: "metadata both ways",
			micro: func(ctx context.Context, c client.Client, addr string) string {
				var header gmetadata.MD
				ctx = meta.NewContext(ctx, meta.Metadata{"X-Colour": "green"})
				out := call("Conf.Echo", "metadata", grpcclient.CallOptions(grpc.Header(&header)))(ctx, c, addr)
				return out + "; reply header x-reply: " + strings.Join(header.Get("x-reply"), ",")
			},
			plain: func(ctx context.Context, cc *grpc.ClientConn) string {
				var header gmetadata.MD
				ctx = gmetadata.AppendToOutgoingContext(ctx, "x-colour", "red", "x-colour", "blue")
				out := plainCall("Conf/Echo", "metadata", grpc.Header(&header))(ctx, cc)
				return out + "; reply header x-reply: " + strings.Join(header.Get("x-reply"), ",")
			},
		},
		conformanceCase{
			name: "go-micro's timeout header, the shorter",
			plain: func(ctx context.Context, cc *grpc.ClientConn) string {
				ctx = gmetadata.AppendToOutgoingContext(ctx, "timeout", strconv.FormatInt(int64(300*time.Millisecond), 10))
				return plainCall("Conf/Deadline", "")(ctx, cc)
			},
		},
		conformanceCase{
			name: "gRPC's deadline, the shorter",
			plain: func(ctx context.Context, cc *grpc.ClientConn) string {
				ctx = gmetadata.AppendToOutgoingContext(ctx, "timeout", strconv.FormatInt(int64(time.Minute), 10))
				ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				return plainCall("Conf/Deadline", "")(ctx, cc)
			},
		},
		conformanceCase{name: "gRPC's deadline alone", plain: plainCall("Conf/Deadline", "")},
		conformanceCase{
			name: "the client's request timeout",
			micro: func(_ context.Context, c client.Client, addr string) string {
				return call("Conf.Deadline", "", client.WithRequestTimeout(300*time.Millisecond))(context.Background(), c, addr)
			},
		},
		conformanceCase{
			name: "the context's deadline",
			micro: func(ctx context.Context, c client.Client, addr string) string {
				ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				return call("Conf.Deadline", "")(ctx, c, addr)
			},
		},
		conformanceCase{
			name: "JSON content type",
			micro: func(ctx context.Context, c client.Client, addr string) string {
				var rsp debugpb.HealthResponse
				req := c.NewRequest("conf", "Conf.Echo", &debugpb.HealthRequest{Service: "Ada"}, client.WithContentType("application/json"))
				return outcome(rsp.Status, c.Call(ctx, req, &rsp, client.WithAddress(addr)))
			},
			plain: plainCall("Conf/Echo", "Ada", grpc.CallContentSubtype("json")),
		},
		conformanceCase{name: "a bytes.Frame of JSON", micro: frame(`{"service":"Ada"}`)},
		conformanceCase{name: "an undecodable body", micro: frame(`{"service":`), plain: func(ctx context.Context, cc *grpc.ClientConn) string {
			var out []byte
			// HealthRequest's field 1 (a string) holding the byte 0xff.
			err := cc.Invoke(ctx, "/conf.Conf/Echo", []byte{0x0a, 0x01, 0xff}, &out, grpc.ForceCodec(rawCodec{}))
			return plainOutcome(string(out), err)
		}},
		conformanceCase{name: "an unknown service", micro: call("Nope.Echo", "Ada"), plain: plainCall("Nope/Echo", "Ada")},
		conformanceCase{name: "an unknown method", micro: call("Conf.Nope", "Ada"), plain: plainCall("Conf/Nope", "Ada")},
		conformanceCase{
			name: "a stream",
			micro: func(ctx context.Context, c client.Client, addr string) string {
				s, err := c.Stream(ctx, c.NewRequest("conf", "Conf.Stream", &debugpb.HealthRequest{}), client.WithAddress(addr))
				if err != nil {
					return outcome("", err)
				}
				defer s.Close()
				if err := s.Send(&debugpb.HealthRequest{Service: "Ada"}); err != nil {
					return outcome("", err)
				}
				var rsp debugpb.HealthResponse
				return outcome(rsp.Status, s.Recv(&rsp))
			},
			plain: func(ctx context.Context, cc *grpc.ClientConn) string {
				s, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/conf.Conf/Stream")
				if err != nil {
					return plainOutcome("", err)
				}
				if err := s.SendMsg(&debugpb.HealthRequest{Service: "Ada"}); err != nil {
					return plainOutcome("", err)
				}
				var rsp debugpb.HealthResponse
				return plainOutcome(rsp.Status, s.RecvMsg(&rsp))
			},
		},
		conformanceCase{
			name: "a call canceled before it starts",
			micro: func(ctx context.Context, c client.Client, addr string) string {
				ctx, cancel := context.WithCancel(ctx)
				cancel()
				return call("Conf.Echo", "Ada")(ctx, c, addr)
			},
		},
		conformanceCase{
			name: "a call canceled while it waits",
			micro: func(ctx context.Context, c client.Client, addr string) string {
				ctx, cancel := context.WithCancel(ctx)
				time.AfterFunc(200*time.Millisecond, cancel)
				return call("Conf.Sleep", "")(ctx, c, addr)
			},
			plain: func(ctx context.Context, cc *grpc.ClientConn) string {
				ctx, cancel := context.WithCancel(ctx)
				time.AfterFunc(200*time.Millisecond, cancel)
				return plainCall("Conf/Sleep", "")(ctx, cc)
			},
		},
		conformanceCase{name: "a wrapper that reads and changes request and reply",
			micro: call("Conf.Echo", "wrap:Ada"), plain: plainCall("Conf/Echo", "wrap:Ada")},
		conformanceCase{
			name:  "a wrapper added after the first call",
			setup: func(s server.Server) error { return s.Init(server.WrapHandler(wrapLate)) },
			micro: call("Conf.Echo", "Ada"), plain: plainCall("Conf/Echo", "Ada"),
		},
		conformanceCase{
			name:  "server.WithRouter",
			setup: func(s server.Server) error { return s.Init(server.WithRouter(router{})) },
			micro: call("Conf.Echo", "Ada"), plain: plainCall("Conf/Echo", "Ada"),
		},
	)
	return cases
}

// frame calls Conf.Echo with a body of raw JSON, as a gateway forwards it.
func frame(body string) func(context.Context, client.Client, string) string {
	return func(ctx context.Context, c client.Client, addr string) string {
		var rsp bytes.Frame
		req := c.NewRequest("conf", "Conf.Echo", &bytes.Frame{Data: []byte(body)}, client.WithContentType("application/json"))
		return outcome(string(rsp.Data), c.Call(ctx, req, &rsp, client.WithAddress(addr)))
	}
}

// The stacks. The reference is go-micro's, on both sides.
const (
	goMicro  = "go-micro"
	fast     = "pkg/k8s"
	fastOff  = "pkg/k8s, fast paths off"
	plainGo  = "grpc-go"
	refStack = goMicro
)

// conformanceServer starts a server of the stack, serving Conf with
// wrapReads, and returns it and its address.
func conformanceServer(t *testing.T, stack string) (server.Server, string) {
	t.Helper()
	var srv server.Server
	if stack == goMicro {
		// In-memory registry and broker: go-micro's defaults multicast.
		srv = grpcserver.NewServer(server.Name("conf"), server.Address("127.0.0.1:0"), server.WrapHandler(wrapReads),
			server.Registry(registry.NewMemoryRegistry()), server.Broker(broker.NewMemoryBroker()))
	} else {
		svc := NewService("conf", micro.Address("127.0.0.1:0"), micro.WrapHandler(wrapReads), FastPaths(stack == fast))
		srv = svc.Server()
	}
	if err := srv.Handle(srv.NewHandler(Conf{})); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	return srv, srv.Options().Address
}

func conformanceClient(stack string) client.Client {
	switch stack {
	case goMicro:
		return stockClient()
	case fastOff:
		c := NewClient().(*fastClient)
		c.on.Store(false)
		return c
	}
	return NewClient()
}

// difference is a row of docs/design.md's table: a case whose result
// differs from go-micro's, and where: "server" (pkg/k8s's, either way),
// "fast server", "client" or "fast client".
type difference struct{ name, where string }

// listedDifferences reads the table that follows the heading "Differences
// from go-micro" in docs/design.md: | case | where | ... |.
func listedDifferences(t *testing.T) map[difference]bool {
	t.Helper()
	f, err := os.Open("../../docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	listed := map[difference]bool{}
	in := false
	for s := bufio.NewScanner(f); s.Scan(); {
		line := s.Text()
		if strings.HasPrefix(line, "#") {
			in = strings.Contains(line, "Differences from go-micro")
			continue
		}
		cells := strings.Split(line, "|")
		if !in || len(cells) < 4 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") || strings.TrimSpace(cells[1]) == "case" {
			continue
		}
		listed[difference{strings.TrimSpace(cells[1]), strings.Trim(strings.TrimSpace(cells[2]), "`")}] = true
	}
	if len(listed) == 0 {
		t.Fatal(`docs/design.md has no table under a heading "Differences from go-micro"`)
	}
	return listed
}

// explains tells whether a listed difference accounts for the case's
// result on a client and server of these stacks.
func explains(d difference, clientStack, serverStack string) bool {
	switch d.where {
	case "server":
		return serverStack != goMicro
	case "fast server":
		return serverStack == fast
	case "client":
		return clientStack == fast || clientStack == fastOff
	case "fast client":
		return clientStack == fast
	}
	return false
}

func TestConformanceWithGoMicro(t *testing.T) {
	// Each server logs its calls and panics; the table says what matters.
	logger := slog.Default()
	slog.SetDefault(slog.New(slog.DiscardHandler))
	t.Cleanup(func() { slog.SetDefault(logger) })
	listed := listedDifferences(t)
	used := map[difference]bool{}
	cases := conformanceCases()
	servers := []string{goMicro, fast, fastOff}
	clients := []string{goMicro, fast, fastOff, plainGo}
	// results[client][server][case], each pair at once: go-micro's
	// retries take the time the calls allow.
	results := map[string]map[string]map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, cs := range clients {
		results[cs] = map[string]map[string]string{}
		for _, ss := range servers {
			srv, addr := conformanceServer(t, ss)
			c := conformanceClient(cs)
			cc := dial(t, addr)
			wg.Go(func() {
				got := map[string]string{}
				for _, k := range cases {
					if k.setup != nil {
						if err := k.setup(srv); err != nil {
							t.Errorf("%s: %v", k.name, err)
							return
						}
					}
					// Long enough for any case, short enough for go-micro's
					// retries of a 408 (see the differences).
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					switch {
					case cs == plainGo && k.plain != nil:
						got[k.name] = strings.ReplaceAll(k.plain(ctx, cc), addr, "ADDR")
					case cs != plainGo && k.micro != nil:
						got[k.name] = strings.ReplaceAll(k.micro(ctx, c, addr), addr, "ADDR")
					}
					cancel()
				}
				mu.Lock()
				results[cs][ss] = got
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	var table, reference strings.Builder
	same, differ := 0, 0
	for _, k := range cases {
		fmt.Fprintf(&reference, "%s | go-micro: %s | grpc-go: %s\n", k.name, results[refStack][refStack][k.name], results[plainGo][refStack][k.name])
		for _, cs := range clients {
			ref := results[cs][refStack]
			if cs != plainGo {
				ref = results[refStack][refStack]
			}
			want, ok := ref[k.name]
			if !ok {
				continue
			}
			for _, ss := range servers {
				got := results[cs][ss][k.name]
				if got == want {
					same++
					continue
				}
				differ++
				var why []difference
				for d := range listed {
					if d.name == k.name && explains(d, cs, ss) {
						why = append(why, d)
						used[d] = true
					}
				}
				fmt.Fprintf(&table, "%s | %s -> %s | %s | go-micro: %s\n", k.name, cs, ss, got, want)
				if len(why) == 0 {
					t.Errorf("%s, %s client -> %s server: %s\n\tgo-micro's: %s\n\tnot listed in docs/design.md's differences", k.name, cs, ss, got, want)
				}
			}
		}
	}
	t.Logf("go-micro's server, by go-micro's client and by grpc-go's:\n%s", reference.String())
	t.Logf("%d cases x %d client stacks x %d servers: %d results as go-micro's, %d different:\n%s", len(cases), len(clients), len(servers), same, differ, table.String())
	for d := range listed {
		if !used[d] {
			t.Errorf("docs/design.md lists %q (%s) as a difference, but the results are go-micro's: take it out", d.name, d.where)
		}
	}
}
