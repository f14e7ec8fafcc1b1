// Command run runs the whole application on this machine, with no cluster:
// it builds the services, the health sidecar, the web frontend, the API
// gateway and NATS, starts them on loopback, prints the URL to open and their logs,
// restarts a process that exits (with a backoff, as the kubelet would),
// rebuilds and restarts a process whose sources change (-watch), and stops
// them all on Ctrl-C or SIGTERM. `make run` runs it.
//
// Ports keep one meaning each: 8xxx serve the application, 9xxx serve
// metrics, as in the cluster (every pod's API on 8080, its metrics on 9090).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/micro/kubernetes/dev/stack"
	"github.com/micro/kubernetes/pkg/k8s"
)

// maxReplicas keeps the replicas' ports (8090 to 8099 by default) below
// the other services' (from 8100).
const maxReplicas = 5

func main() {
	var ports stack.Ports
	flag.IntVar(&ports.Web, "web-port", 8080, "port of the web frontend")
	flag.IntVar(&ports.API, "api-port", 8081, "port of the API gateway")
	flag.IntVar(&ports.Greeter, "greeter-port", 8090, "port of the greeter's gRPC server")
	flag.IntVar(&ports.Health, "health-port", 8091, "port of the greeter's health sidecar")
	flag.IntVar(&ports.GreeterMetrics, "greeter-metrics-port", 9090, "port of the greeter's Prometheus metrics")
	flag.IntVar(&ports.WebMetrics, "web-metrics-port", 9091, "port of the web frontend's Prometheus metrics")
	flag.IntVar(&ports.APIMetrics, "api-metrics-port", 9081, "port of the API gateway's Prometheus metrics")
	flag.IntVar(&ports.NATS, "nats-port", k8s.EventsPort, "port of NATS, the events' broker")
	flag.IntVar(&ports.NATSMonitor, "nats-monitor-port", 8222, "port of NATS's monitoring (/healthz)")
	replicas := flag.Int("greeter-replicas", 1, fmt.Sprintf("replicas of the greeter, each with its sidecar, on the first one's ports + 2, + 4, ... (at most %d); the web balances over them", maxReplicas))
	servicesPort := flag.Int("services-port", 8100, "first gRPC port of the other services, one each in name order; their metrics are on the same ports + "+strconv.Itoa(stack.MetricsOffset))
	bin := flag.String("bin", "bin", "folder to build the binaries into")
	watch := flag.Bool("watch", true, "rebuild a binary whose Go sources or embedded files change, and restart the processes that run it; the others keep running")
	flag.Parse()

	if *replicas < 1 || *replicas > maxReplicas {
		fmt.Fprintf(os.Stderr, "-greeter-replicas=%d: want 1 to %d (their ports must not reach the other services')\n", *replicas, maxReplicas)
		os.Exit(2)
	}
	for i := 1; i < *replicas; i++ {
		ports.Replicas = append(ports.Replicas, ports.ReplicaPorts(i))
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, ports, *servicesPort, *watch); err != nil {
		slog.Error("make run failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin string, ports stack.Ports, servicesPort int, watch bool) error {
	root, err := stack.Root(ctx)
	if err != nil {
		return err
	}
	others, err := stack.Services(root)
	if err != nil {
		return err
	}
	ports.Services = stack.PortsFrom(servicesPort, others)
	if !stack.HasEvents(root) {
		ports.NATS = 0
	}
	fmt.Println("building the services, the health sidecar, the web frontend, the API gateway, the micro toolkit and NATS...")
	built := time.Now()
	if err := stack.Build(ctx, bin); err != nil {
		return err
	}
	s, err := stack.Start(ctx, stack.Options{
		Bin: bin, Ports: ports, ConfigFile: filepath.Join(root, stack.ConfigFile), Out: os.Stdout, Restart: true,
		// The events and the counts outlive a run, as on a volume.
		NATSDir: filepath.Join(bin, "nats"),
	})
	if err != nil {
		return err
	}
	defer s.Stop()

	fmt.Printf(`
  The application is running. Open %[1]s
    JSON API:       %[1]s/greeter?name=Alice
    API gateway:    curl -d '{"name":"Alice"}' %[6]s/greeter/Greeter.Hello
    health sidecar: %[2]s
    greeter gRPC:   %[3]s
    metrics:        %[4]s %[5]s %[7]s
`, ports.URL(), ports.HealthURL(), ports.GreeterAddress(), ports.MetricsURL("web"), ports.MetricsURL("greeter"),
		ports.APIURL(), ports.MetricsURL("api"))
	for i, r := range ports.Replicas {
		greeter, _ := stack.ReplicaName(i + 1)
		fmt.Printf("    %-15s 127.0.0.1:%d (sidecar :%d, metrics :%d)\n", greeter+" gRPC:", r.GRPC, r.Health, r.Metrics)
	}
	for _, name := range others {
		fmt.Printf("    %-15s %s (metrics %s)\n", name+" gRPC:", ports.ServiceAddress(name), ports.MetricsURL(name))
	}
	if ports.NATS != 0 {
		fmt.Printf("    %-15s %s (data in %s)\n", "NATS:", ports.EventsAddress(), filepath.Join(bin, "nats"))
	}
	if micro, env, ok := s.Micro(); ok {
		fmt.Printf("    %-15s %s %s call greeter Greeter.Hello '{\"name\":\"Alice\"}'\n", "micro call:", env, micro)
	}
	if watch {
		fmt.Println("  A change to the Go sources rebuilds and restarts what it changes (-watch=false: never).")
	}
	fmt.Print("  Ctrl-C stops everything.\n\n")

	if watch {
		if err := s.Watch(ctx, root, built); err != nil {
			return err
		}
	}
	<-ctx.Done()
	fmt.Println("stopping...")
	return nil
}
