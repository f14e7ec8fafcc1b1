// Package probe answers an HTTP health check by calling the go-micro
// Debug.Health RPC of the service it sits beside.
package probe

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"go-micro.dev/v6/client"
	debugpb "go-micro.dev/v6/debug/proto"
	"go-micro.dev/v6/errors"

	"github.com/micro/kubernetes/pkg/k8s/httpapi"
)

const (
	// Path is where the sidecar answers for the service's health: the path of
	// the service's liveness probe.
	Path = "/health"
	// LivePath answers 200 while the sidecar itself serves: the path of the
	// sidecar's own probes.
	LivePath = "/livez"
	// DefaultAddress is where the sidecar listens: all interfaces, since the
	// kubelet calls the pod IP (a loopback default was the original's bug).
	DefaultAddress = "0.0.0.0:8081"
	// DefaultTimeout bounds one check.
	DefaultTimeout = time.Second
)

// Checker is an http.Handler: 200 when the service answers Debug.Health with
// "ok" within Timeout, 503 with the reason otherwise.
type Checker struct {
	Client  client.Client
	Service string        // the service's go-micro name
	Address string        // where it listens, e.g. 127.0.0.1:8080
	Timeout time.Duration // the longest a check may take
}

// Status is the body of every answer.
type Status struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func (c Checker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := c.Check(r.Context()); err != nil {
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, Status{Status: "unhealthy", Error: err.Error()})
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, Status{Status: "ok"})
}

// Check calls Debug.Health once, with no retry: a probe that retries hides
// the slowness it is there to see, and the kubelet retries by itself.
func (c Checker) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	rsp, err := debugpb.NewDebugService(c.Service, c.Client).Health(ctx, &debugpb.HealthRequest{},
		client.WithAddress(c.Address),
		client.WithRetries(0),
		client.WithRequestTimeout(c.Timeout),
		client.WithDialTimeout(c.Timeout),
	)
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s at %s did not answer Debug.Health within %s", c.Service, c.Address, c.Timeout)
	case err != nil:
		return fmt.Errorf("%s at %s: Debug.Health failed: %s", c.Service, c.Address, reason(err))
	case rsp.GetStatus() != "ok":
		return fmt.Errorf("%s at %s: Debug.Health answered %q, not \"ok\"", c.Service, c.Address, rsp.GetStatus())
	}
	return nil
}

// reason is the human part of a go-micro error, which prints as JSON.
func reason(err error) string {
	if merr := errors.FromError(err); merr != nil && merr.Detail != "" {
		return merr.Detail
	}
	return err.Error()
}
