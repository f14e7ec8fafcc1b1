// Command loadgen drives the web frontend's /greeter (HTTP) or the greeter's
// Hello RPC directly through a go-micro client, at a fixed rate or at
// saturation, for a bounded time or count, and prints throughput, errors and
// latency percentiles. In the cluster (the loadgen profile) it runs at a low
// rate against the web Service until stopped, and serves /health meanwhile.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/micro/kubernetes/loadgen/load"
	"github.com/micro/kubernetes/pkg/k8s"
	"github.com/micro/kubernetes/pkg/k8s/httpapi"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

func main() {
	flushLog, err := k8s.SetupLogging()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer flushLog()
	if err := k8s.SetMemoryLimit(); err != nil {
		slog.Error("memory limit", "err", err)
		os.Exit(2)
	}
	target := flag.String("url", "http://127.0.0.1:8080/greeter?name=loadgen", "HTTP mode: the URL to GET")
	rpc := flag.String("rpc", "", "RPC mode: the go-micro service to call Greeter.Hello on (e.g. greeter), found by the static selector")
	name := flag.String("name", "loadgen", "RPC mode: the name to greet")
	var o load.Options
	flag.Float64Var(&o.Rate, "rate", 10, "requests per second; 0: as fast as -workers allow (saturation)")
	flag.IntVar(&o.Workers, "workers", 16, "requests in flight at most")
	flag.DurationVar(&o.Duration, "duration", 30*time.Second, "how long to run; 0: until SIGTERM or -requests")
	flag.IntVar(&o.Requests, "requests", 0, "how many requests at most; 0: no limit")
	timeout := flag.Duration("timeout", 5*time.Second, "deadline of each request")
	wait := flag.Duration("wait", 0, "wait this long at most for the target to answer before starting")
	healthAddr := flag.String("health_address", "", "serve /health here while running (the pod's probes); empty: do not")
	asJSON := flag.Bool("json", false, "print the result as JSON")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("loadgen version", k8s.Version())
		return
	}
	k8s.LogStart("loadgen")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	do, err := newRequester(*target, *rpc, *name, *timeout)
	if err != nil {
		flushLog()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if *healthAddr != "" {
		go func() {
			if err := httpapi.ServeHealth(ctx, *healthAddr); err != nil {
				slog.Error("health", "err", err)
			}
		}()
	}
	if *wait > 0 {
		if err := waitFor(ctx, do, *wait); err != nil {
			slog.Error("the target never answered", "err", err)
			os.Exit(1)
		}
	}
	slog.Info("load starting", "url", *target, "rpc", *rpc, "rate", o.Rate, "workers", o.Workers, "duration", o.Duration.String(), "requests", o.Requests)
	r := load.Run(ctx, o, do)
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(r)
	} else {
		fmt.Println(r)
	}
	if r.Requests > 0 && r.Errors == r.Requests {
		slog.Error("every request failed")
		os.Exit(1)
	}
}

// newRequester returns the call to repeat: an HTTP GET, or a Hello RPC.
func newRequester(target, rpc, name string, timeout time.Duration) (func(context.Context) error, error) {
	if rpc != "" {
		greeter := greeterv1.NewGreeterService(rpc, k8s.NewClient())
		return func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			_, err := greeter.Hello(ctx, &greeterv1.HelloRequest{Name: name})
			return err
		}, nil
	}
	if u, err := url.Parse(target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-url %q is not an http(s) URL", target)
	}
	// Enough idle connections for every worker: one connection each, reused.
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
	return load.Get(client, target), nil
}

// waitFor retries one request until it succeeds, as the target may start
// after the load generator (in the cluster, they start together).
func waitFor(ctx context.Context, do func(context.Context) error, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		err := do(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", limit, err)
		case <-time.After(time.Second):
		}
	}
}
