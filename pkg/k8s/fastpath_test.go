package k8s

import (
	"context"
	"testing"
	"time"

	"go-micro.dev/v6"
	"go-micro.dev/v6/client"
	debugpb "go-micro.dev/v6/debug/proto"
	merrors "go-micro.dev/v6/errors"
	"go-micro.dev/v6/server"
	"google.golang.org/grpc/codes"
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

// The short path keeps go-micro's behaviour: handler wrappers see the
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
		t.Fatal("the handler's methods did not get the short path")
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
