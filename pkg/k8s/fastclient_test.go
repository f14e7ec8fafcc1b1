package k8s

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go-micro.dev/v6"
	debugpb "go-micro.dev/v6/debug/proto"
	"go-micro.dev/v6/server"
)

// A service pinned to several addresses, as a headless Service's name
// resolves to every pod, gets each call on the next one: round robin.
func TestCallsSpreadOverEveryAddress(t *testing.T) {
	const servers, calls = 3, 30
	var counts [servers]atomic.Int32
	var addrs string
	for i := range servers {
		count := func(next server.HandlerFunc) server.HandlerFunc {
			return func(ctx context.Context, req server.Request, rsp any) error {
				counts[i].Add(1)
				return next(ctx, req, rsp)
			}
		}
		svc := NewService("greeter", micro.Address("127.0.0.1:0"), micro.WrapHandler(count))
		serve(t, svc)
		addrs += ",greeter=" + svc.Server().Options().Address
	}
	t.Setenv(EnvAddresses, addrs[1:])
	debug := debugpb.NewDebugService("greeter", NewClient())
	call := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := debug.Health(ctx, &debugpb.HealthRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	// Round robin goes over the connections that are up: until all are,
	// the first ones take more.
	for deadline := time.Now().Add(5 * time.Second); ; call() {
		if counts[0].Load() > 0 && counts[1].Load() > 0 && counts[2].Load() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every server was called: %d %d %d", counts[0].Load(), counts[1].Load(), counts[2].Load())
		}
	}
	var before [servers]int32
	for i := range servers {
		before[i] = counts[i].Load()
	}
	for range calls {
		call()
	}
	for i := range servers {
		if n := counts[i].Load() - before[i]; n != calls/servers {
			t.Errorf("server %d served %d of %d calls, want %d: one in turn", i, n, calls, calls/servers)
		}
	}
}
