// Package e2e runs the real binaries together on loopback and checks the
// application from the outside: gRPC, the JSON API, the page in headless
// Chromium, the health sidecar, faults and the local runner.
package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/micro/kubernetes/dev/stack"
	"github.com/micro/kubernetes/pkg/k8s"
)

// bin holds the binaries every test runs, built once.
var bin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Bounded by go test's -timeout only: a cold build on a busy machine
	// takes minutes, and no test's own bound should include it.
	if err := stack.Build(context.Background(), dir); err != nil {
		fmt.Fprintln(os.Stderr, "building the binaries:", err)
		return 1
	}
	bin = dir
	return m.Run()
}

// startStack runs a fresh application on free loopback ports for one test,
// with the repository's configuration.
// stockClients tells whether the processes run with go-micro's own server
// and client, as `make test-stock` runs them (MICRO_FAST_PATHS=false).
// go-micro's client does not know which replicas are up: it sends calls to
// a replica that stopped, and those fail (docs/design.md, the fast paths).
func stockClients() bool {
	on, err := strconv.ParseBool(os.Getenv(k8s.EnvFastPaths))
	return err == nil && !on
}

func startStack(t *testing.T) *stack.Stack {
	t.Helper()
	root, err := stack.Root(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return startStackWith(t, filepath.Join(root, stack.ConfigFile))
}

func startStackWith(t *testing.T, configFile string, out ...io.Writer) *stack.Stack {
	t.Helper()
	return startPorts(t, freePorts(t, 1), configFile, out...)
}

// freePorts are free loopback ports for the stack, with that many replicas
// of the greeter, every other service, and NATS.
func freePorts(t *testing.T, replicas int) stack.Ports {
	t.Helper()
	ports := stack.Ports{
		Greeter: freePort(t), Health: freePort(t), Web: freePort(t), API: freePort(t),
		GreeterMetrics: freePort(t), WebMetrics: freePort(t), APIMetrics: freePort(t),
		Services: map[string]stack.ServicePorts{},
	}
	for range replicas - 1 {
		ports.Replicas = append(ports.Replicas, stack.ReplicaPorts{GRPC: freePort(t), Metrics: freePort(t), Health: freePort(t)})
	}
	root, err := stack.Root(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	others, err := stack.Services(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range others {
		ports.Services[name] = stack.ServicePorts{GRPC: freePort(t), Metrics: freePort(t)}
	}
	if stack.HasEvents(root) {
		ports.NATS, ports.NATSMonitor = freePort(t), freePort(t)
	}
	return ports
}

func startPorts(t *testing.T, ports stack.Ports, configFile string, out ...io.Writer) *stack.Stack {
	t.Helper()
	return startOptions(t, stack.Options{Ports: ports, ConfigFile: configFile, Out: io.MultiWriter(append(out, testWriter{t})...)})
}

// startOptions starts a stack of the binaries TestMain built.
func startOptions(t *testing.T, o stack.Options) *stack.Stack {
	t.Helper()
	o.Bin = bin
	if o.Out == nil {
		o.Out = testWriter{t}
	}
	s, err := stack.Start(context.Background(), o)
	if err != nil {
		t.Fatalf("starting the application: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// freePort is a loopback port reserved until the test ends, after the
// processes it started have stopped.
func freePort(t *testing.T) int {
	t.Helper()
	port, release, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return port
}

// testWriter sends the processes' logs to the test's log, shown on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}
