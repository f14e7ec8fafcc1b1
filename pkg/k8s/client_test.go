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
		if err := svc.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = svc.Stop() })
		addrs += ",greeter=" + svc.Server().Options().Address
	}
	t.Setenv(EnvAddresses, addrs[1:])
	debug := debugpb.NewDebugService("greeter", NewClient())
	for range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := debug.Health(ctx, &debugpb.HealthRequest{})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range servers {
		// Round robin over ready connections: every server gets a share,
		// whichever connected first.
		if n := counts[i].Load(); n < calls/servers-2 {
			t.Errorf("server %d served %d of %d calls, want about %d", i, n, calls, calls/servers)
		}
	}
}
