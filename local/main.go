// Command local runs the whole application on this machine, with no cluster:
// it builds the greeter, the health sidecar and the web frontend, starts them
// on loopback, prints the URL to open and their logs, and stops all three on
// Ctrl-C or SIGTERM. `make run` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/micro/kubernetes/local/stack"
)

func main() {
	var ports stack.Ports
	flag.IntVar(&ports.Web, "web-port", 8080, "port of the web frontend")
	flag.IntVar(&ports.Greeter, "greeter-port", 9090, "port of the greeter's gRPC server")
	flag.IntVar(&ports.Health, "health-port", 9091, "port of the greeter's health sidecar")
	flag.IntVar(&ports.GreeterMetrics, "greeter-metrics-port", 9092, "port of the greeter's Prometheus metrics")
	flag.IntVar(&ports.WebMetrics, "web-metrics-port", 9093, "port of the web frontend's Prometheus metrics")
	servicesPort := flag.Int("services-port", 9100, "first port of the other services: each takes two (gRPC, metrics), in name order")
	bin := flag.String("bin", "bin", "folder to build the binaries into")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, ports, *servicesPort); err != nil {
		slog.Error("local run failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin string, ports stack.Ports, servicesPort int) error {
	root, err := stack.Root(ctx)
	if err != nil {
		return err
	}
	others, err := stack.Services(root)
	if err != nil {
		return err
	}
	ports.Services = map[string]stack.ServicePorts{}
	for i, name := range others {
		ports.Services[name] = stack.ServicePorts{GRPC: servicesPort + 2*i, Metrics: servicesPort + 2*i + 1}
	}
	fmt.Println("building the greeter, the health sidecar and the web frontend...")
	if err := stack.Build(ctx, bin); err != nil {
		return err
	}
	s, err := stack.Start(ctx, stack.Options{
		Bin: bin, Ports: ports, ConfigFile: filepath.Join(root, stack.ConfigFile), Out: os.Stdout,
	})
	if err != nil {
		return err
	}
	defer s.Stop()

	fmt.Printf(`
  The application is running. Open %[1]s
    JSON API:       %[1]s/greeter?name=Alice
    health sidecar: %[2]s
    greeter gRPC:   %[3]s
    metrics:        %[4]s %[5]s
`, ports.URL(), ports.HealthURL(), ports.GreeterAddress(), ports.MetricsURL("web"), ports.MetricsURL("greeter"))
	for _, name := range others {
		fmt.Printf("    %-15s %s (metrics %s)\n", name+" gRPC:", ports.ServiceAddress(name), ports.MetricsURL(name))
	}
	fmt.Print("  Ctrl-C stops everything.\n\n")

	select {
	case <-ctx.Done():
		fmt.Println("stopping...")
		return nil
	case name := <-s.Exited():
		return fmt.Errorf("%s exited; stopping the others", name)
	}
}
