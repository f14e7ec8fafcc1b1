// Package gateway is the API gateway's HTTP surface: POST /{service}/{endpoint}
// with a JSON object calls that endpoint of that service over gRPC, as
// go-micro's `micro api` does, and answers its reply as JSON. Only the
// endpoints on the configuration's allow-list are reachable: a gateway in
// front of a cluster must not be a way into everything in it.
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go-micro.dev/v6/client"
	codec "go-micro.dev/v6/codec/bytes"

	"github.com/micro/kubernetes/pkg/k8s"
	"github.com/micro/kubernetes/pkg/k8s/httpapi"
)

const (
	// HealthPath answers 200 while the gateway serves: its probes' path.
	HealthPath = "/health"
	// DefaultCallTimeout is the deadline of a call through the gateway
	// unless --call_timeout says otherwise.
	DefaultCallTimeout = 2 * time.Second
	// MaxBody bounds a request body: the largest message a service takes.
	MaxBody = k8s.MaxMessageSize
)

// Config is the gateway's part of the configuration file.
type Config struct {
	// Allow lists, by service, the endpoints ("Greeter.Hello") the gateway
	// calls. Nothing else is reachable through it.
	Allow map[string][]string `json:"allow"`
}

// Allowed says whether the gateway may call endpoint of service.
func (c Config) Allowed(service, endpoint string) bool {
	return slices.Contains(c.Allow[service], endpoint)
}

var (
	// A service is a Kubernetes Service's name (a DNS label): what the
	// static selector resolves.
	serviceName = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
	// An endpoint is go-micro's Handler.Method.
	endpointName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$`)
)

// internal are the endpoints every service serves for the cluster's own
// use, never through the gateway, whatever the configuration says.
var internal = []string{"Debug.", "grpc.health."}

// ParseConfig reads the gateway's part of a JSON configuration. A name that
// is not a service's or an endpoint's, or an internal endpoint, is refused:
// the list is what the gateway exposes, and a mistake in it must not be.
func ParseConfig(data []byte) (Config, error) {
	var root struct {
		API Config `json:"api"`
	}
	if err := json.Unmarshal(data, &root); err != nil {
		return Config{}, fmt.Errorf("not JSON: %w", err)
	}
	c := root.API
	for service, endpoints := range c.Allow {
		if !serviceName.MatchString(service) {
			return Config{}, fmt.Errorf("api.allow: %q is not a service's name (a DNS label)", service)
		}
		for _, e := range endpoints {
			if !endpointName.MatchString(e) {
				return Config{}, fmt.Errorf("api.allow.%s: %q is not an endpoint (Handler.Method)", service, e)
			}
			if isInternal(e) {
				return Config{}, fmt.Errorf("api.allow.%s: %s is the cluster's own, never exposed", service, e)
			}
		}
	}
	return c, nil
}

func isInternal(endpoint string) bool {
	return slices.ContainsFunc(internal, func(p string) bool { return strings.HasPrefix(endpoint, p) })
}

// server calls services for HTTP requests.
type server struct {
	client  client.Client
	timeout time.Duration
	config  func() Config
}

// New returns the gateway's handler. Every call is bounded by timeout;
// config is the current configuration.
func New(c client.Client, timeout time.Duration, config func() Config) http.Handler {
	g := &server{client: c, timeout: timeout, config: config}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+HealthPath, g.health)
	mux.HandleFunc("/{service}/{endpoint}", g.call)
	return httpapi.LimitBody(MaxBody, httpapi.Router(mux))
}

func (g *server) health(w http.ResponseWriter, _ *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// call forwards the body, a JSON object, to the endpoint as the request,
// and answers the reply. An endpoint off the list is 404 whatever the
// method, so that the gateway tells nothing of what it does not expose.
func (g *server) call(w http.ResponseWriter, r *http.Request) {
	service, endpoint := r.PathValue("service"), r.PathValue("endpoint")
	if !g.config().Allowed(service, endpoint) {
		httpapi.WriteError(w, http.StatusNotFound, "no such endpoint: "+service+"/"+endpoint)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpapi.WriteError(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed: call an endpoint with POST")
		return
	}
	body, err := io.ReadAll(r.Body)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		httpapi.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", MaxBody))
		return
	case err != nil:
		httpapi.WriteError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		return
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}") // an endpoint that takes nothing
	}
	switch {
	case !utf8.Valid(body):
		httpapi.WriteError(w, http.StatusBadRequest, "the request body is not UTF-8")
		return
	case !json.Valid(body) || bytes.TrimSpace(body)[0] != '{':
		httpapi.WriteError(w, http.StatusBadRequest, "the request body must be a JSON object")
		return
	}
	rsp, failed := g.forward(r.Context(), service, endpoint, body)
	if failed != nil {
		status, msg := failed.Status()
		httpapi.WriteError(w, status, msg)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// Ended by a newline, as every other JSON body here (json.Encoder's).
	_, _ = w.Write(append(rsp, '\n'))
}

// forward makes the call as go-micro's `micro api` does: the body goes as
// it is, as JSON, which go-micro's server decodes into the endpoint's
// request type and whose reply it encodes as JSON.
func (g *server) forward(ctx context.Context, service, endpoint string, body []byte) ([]byte, *httpapi.CallError) {
	ctx, cancel := k8s.WithBudget(ctx, g.timeout)
	defer cancel()
	req := g.client.NewRequest(service, endpoint, &codec.Frame{Data: body}, client.WithContentType("application/json"))
	var rsp codec.Frame
	if err := g.client.Call(ctx, req, &rsp); err != nil {
		return nil, &httpapi.CallError{Service: service, Err: err, TimedOut: ctx.Err() != nil, Timeout: g.timeout}
	}
	return rsp.Data, nil
}
