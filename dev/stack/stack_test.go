package stack

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestEveryServiceRuns builds and starts the stack with every service of
// services/ (the greeter, and each one make new-service added) and NATS,
// each on free ports, asks each for its gRPC health, and calls every endpoint the
// configuration allows through the API gateway: what make run starts.
func TestEveryServiceRuns(t *testing.T) {
	ctx := t.Context()
	root, err := Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := Build(ctx, bin); err != nil {
		t.Fatal(err)
	}
	others, err := Services(root)
	if err != nil {
		t.Fatal(err)
	}
	ports := Ports{Greeter: freePort(t), Health: freePort(t), Web: freePort(t), API: freePort(t), GreeterMetrics: freePort(t), WebMetrics: freePort(t), APIMetrics: freePort(t),
		Services: map[string]ServicePorts{}}
	for _, name := range others {
		ports.Services[name] = ServicePorts{GRPC: freePort(t), Metrics: freePort(t)}
	}
	if HasEvents(root) {
		ports.NATS, ports.NATSMonitor = freePort(t), freePort(t)
	}
	s, err := Start(ctx, Options{Bin: bin, Ports: ports, ConfigFile: filepath.Join(root, ConfigFile), Out: t.Output()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	for _, name := range append([]string{"greeter"}, others...) {
		conn, err := grpc.NewClient(ports.ServiceAddress(name), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		rsp, err := healthpb.NewHealthClient(conn).Check(c, &healthpb.HealthCheckRequest{Service: name})
		cancel()
		conn.Close()
		if err != nil || rsp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("%s at %s: gRPC health %v, %v; want SERVING", name, ports.ServiceAddress(name), rsp, err)
		}
	}
	config, err := os.ReadFile(filepath.Join(root, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		API struct{ Allow map[string][]string }
	}
	if err := json.Unmarshal(config, &c); err != nil {
		t.Fatal(err)
	}
	for _, name := range append([]string{"greeter"}, others...) {
		if len(c.API.Allow[name]) == 0 {
			t.Errorf("%s: the API gateway allows none of its endpoints", name)
		}
		for _, endpoint := range c.API.Allow[name] {
			url := ports.APIURL() + "/" + name + "/" + endpoint
			rsp, err := http.Post(url, "application/json", strings.NewReader(`{"name":"x"}`))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(rsp.Body)
			rsp.Body.Close()
			if rsp.StatusCode != http.StatusOK {
				t.Errorf("POST %s: %d %s, want 200", url, rsp.StatusCode, body)
			}
		}
	}
	t.Logf("running: greeter and %v", others)
}

func freePort(t *testing.T) int {
	t.Helper()
	port, release, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return port
}
