package k8s

import (
	"context"
	"net"
	"testing"
	"time"

	"go-micro.dev/v6"
	"go-micro.dev/v6/client"
	grpcclient "go-micro.dev/v6/client/grpc"
	debugpb "go-micro.dev/v6/debug/proto"
	merrors "go-micro.dev/v6/errors"
	meta "go-micro.dev/v6/metadata"
	"go-micro.dev/v6/server"
	"google.golang.org/grpc/codes"
	gmetadata "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Faults answers its calls with the errors its name says.
type Faults struct{}

func (Faults) Bad(context.Context, *debugpb.HealthRequest, *debugpb.HealthResponse) error {
	return merrors.BadRequest("faults", "bad %s", "input")
}

func (Faults) Panic(context.Context, *debugpb.HealthRequest, *debugpb.HealthResponse) error {
	panic("boom")
}

func (Faults) Plain(context.Context, *debugpb.HealthRequest, *debugpb.HealthResponse) error {
	return context.DeadlineExceeded
}

func (Faults) Echo(_ context.Context, req *debugpb.HealthRequest, rsp *debugpb.HealthResponse) error {
	rsp.Status = req.GetService()
	return nil
}

// The fast path keeps go-micro's behaviour: handler wrappers see the
// endpoint and the decoded request; errors keep their codes and, for
// go-micro's own, the detail its client reads back; a panic is Internal.
func TestUnaryCallsKeepGoMicrosBehaviour(t *testing.T) {
	var seen []string
	wrap := func(next server.HandlerFunc) server.HandlerFunc {
		return func(ctx context.Context, req server.Request, rsp any) error {
			if b, ok := req.Body().(*debugpb.HealthRequest); ok {
				seen = append(seen, req.Endpoint()+" "+b.GetService())
			}
			return next(ctx, req, rsp)
		}
	}
	svc := NewService("faults", micro.Address("127.0.0.1:0"), micro.WrapHandler(wrap))
	if err := svc.Server().Handle(svc.Server().NewHandler(Faults{})); err != nil {
		t.Fatal(err)
	}
	if fast, ok := svc.Server().(*fastServer); !ok || fast.lookup("Faults", "Echo") == nil {
		t.Fatal("the handler's methods did not get the fast path")
	}
	serve(t, svc)
	addr := svc.Server().Options().Address
	cc := dial(t, addr)
	call := func(method string) (*debugpb.HealthResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rsp := &debugpb.HealthResponse{}
		return rsp, cc.Invoke(ctx, "/faults.Faults/"+method, &debugpb.HealthRequest{Service: "x"}, rsp)
	}

	if rsp, err := call("Echo"); err != nil || rsp.GetStatus() != "x" {
		t.Errorf("Echo: %v %v", rsp, err)
	}
	for method, want := range map[string]codes.Code{"Bad": codes.InvalidArgument, "Panic": codes.Internal, "Plain": codes.DeadlineExceeded} {
		if _, err := call(method); status.Code(err) != want {
			t.Errorf("%s: %v, want %s", method, err, want)
		}
	}
	// go-micro's client gets its own error back, detail and code.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := NewClient().Call(ctx, NewClient().NewRequest("faults", "Faults.Bad", &debugpb.HealthRequest{}), &debugpb.HealthResponse{}, client.WithAddress(addr))
	if merr := merrors.FromError(err); merr.Code != 400 || merr.Detail != "bad input" {
		t.Errorf("go-micro's client got %v, want 400 bad input", err)
	}
	if len(seen) == 0 || seen[0] != "Faults.Echo x" {
		t.Errorf("the wrapper saw %v, want the endpoint and the decoded request", seen)
	}
}

// Seen hands over the metadata and the deadline each call reached it with.
type Seen struct{ calls chan<- seenCall }

type seenCall struct {
	md       meta.Metadata
	deadline time.Duration // from when the call arrived; 0 if none
}

func (s Seen) Call(ctx context.Context, _ *debugpb.HealthRequest, _ *debugpb.HealthResponse) error {
	md, _ := meta.FromContext(ctx)
	var left time.Duration
	if d, ok := ctx.Deadline(); ok {
		left = time.Until(d)
	}
	s.calls <- seenCall{md, left}
	return nil
}

// A handler sees what go-micro's server gives it: the call's headers (each
// once, several values joined), the caller's address as Remote, and the
// earlier of gRPC's deadline and the go-micro client's request timeout;
// not the headers go-micro uses for itself.
func TestHandlersSeeGoMicrosMetadataAndDeadline(t *testing.T) {
	calls := make(chan seenCall, 1)
	svc := NewService("seen", micro.Address("127.0.0.1:0"))
	if err := svc.Server().Handle(svc.Server().NewHandler(Seen{calls})); err != nil {
		t.Fatal(err)
	}
	serve(t, svc)
	addr := svc.Server().Options().Address
	req := &debugpb.HealthRequest{}

	check := func(name string, md map[string]string, deadline time.Duration) {
		t.Helper()
		got := <-calls
		for k, v := range md {
			if got.md[k] != v {
				t.Errorf("%s: metadata %q = %q, want %q (all: %v)", name, k, got.md[k], v, got.md)
			}
		}
		for _, k := range []string{"timeout", "x-content-type"} {
			if _, ok := got.md[k]; ok {
				t.Errorf("%s: metadata has go-micro's own %q: %v", name, k, got.md)
			}
		}
		if remote, _, err := net.SplitHostPort(got.md["Remote"]); err != nil || remote != "127.0.0.1" {
			t.Errorf("%s: Remote = %q, want the caller's 127.0.0.1:port", name, got.md["Remote"])
		}
		if got.deadline <= 0 || got.deadline > deadline || got.deadline < deadline-2*time.Second {
			t.Errorf("%s: the handler's deadline is %v away, want about %v", name, got.deadline, deadline)
		}
	}

	// A plain gRPC client: its headers and its deadline; and the earlier
	// of that and a go-micro request timeout, which is a header.
	for _, c := range []struct {
		name     string
		header   []string
		deadline time.Duration
	}{
		{"plain gRPC", []string{"colour", "red", "colour", "blue"}, 20 * time.Second},
		{"plain gRPC with a go-micro timeout", []string{"colour", "red", "colour", "blue", "timeout", "3000000000"}, 3 * time.Second},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		ctx = gmetadata.AppendToOutgoingContext(ctx, c.header...)
		err := dial(t, addr).Invoke(ctx, "/seen.Seen/Call", req, &debugpb.HealthResponse{})
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		check(c.name, map[string]string{"colour": "red, blue", "content-type": "application/grpc"}, c.deadline)
	}

	// go-micro's own client, which sends its request timeout both ways.
	stock := grpcclient.NewClient()
	ctx := meta.NewContext(context.Background(), meta.Metadata{"Colour": "green"})
	if err := stock.Call(ctx, stock.NewRequest("seen", "Seen.Call", req), &debugpb.HealthResponse{},
		client.WithAddress(addr), client.WithRequestTimeout(4*time.Second)); err != nil {
		t.Fatalf("go-micro: %v", err)
	}
	check("go-micro", map[string]string{"colour": "green", "content-type": "application/grpc+proto"}, 4*time.Second)
}
