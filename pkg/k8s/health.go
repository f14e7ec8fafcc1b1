package k8s

import (
	"context"
	"sync/atomic"

	debugpb "go-micro.dev/v6/debug/proto"
	"go-micro.dev/v6/errors"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// grpcHealth answers grpc.health.v1.Health/Check, the standard gRPC health
// check that Kubernetes' grpc probes and tools like grpc-health-probe call:
// SERVING until the service starts to stop, NOT_SERVING from then on.
type grpcHealth struct {
	service  string
	stopping *atomic.Bool
}

// newGRPCHealth returns the handler to register (go-micro names a handler
// by its type, so the type is Health) and a func that marks it stopping.
func newGRPCHealth(service string) (handler any, stop func() error) {
	type Health struct{ grpcHealth }
	h := grpcHealth{service: service, stopping: new(atomic.Bool)}
	return &Health{h}, func() error { h.stopping.Store(true); return nil }
}

// Check answers for the whole server ("") or for the service by its name.
func (h grpcHealth) Check(_ context.Context, req *healthpb.HealthCheckRequest, rsp *healthpb.HealthCheckResponse) error {
	if s := req.GetService(); s != "" && s != h.service {
		return errors.NotFound(h.service, "unknown service %q", s)
	}
	rsp.Status = healthpb.HealthCheckResponse_SERVING
	if h.stopping.Load() {
		rsp.Status = healthpb.HealthCheckResponse_NOT_SERVING
	}
	return nil
}

// newDebugHandler returns a handler that the server registers as "Debug",
// answering Debug.Health and nothing else of go-micro's Debug service.
func newDebugHandler() any {
	type Debug struct{ health }
	return &Debug{}
}

type health struct{}

// Health answers "ok" whenever the server can take requests at all, which is
// what a liveness probe asks.
func (health) Health(_ context.Context, _ *debugpb.HealthRequest, rsp *debugpb.HealthResponse) error {
	rsp.Status = "ok"
	return nil
}
