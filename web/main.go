// Command web is the web frontend: an HTML page at / and a JSON API at
// /greeter that greet through the greeter service and show the count of
// the stats service, plus /health.
//
// It listens on 0.0.0.0:8080 unless --server_address or MICRO_SERVER_ADDRESS
// says otherwise, and finds the greeter and the stats with the static
// selector (greeter -> greeter:8080, stats -> stats:8080, see pkg/k8s).
package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"
	"go-micro.dev/v6/web"

	"github.com/micro/kubernetes/pkg/k8s"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
	statsv1 "github.com/micro/kubernetes/proto/stats/v1"
	"github.com/micro/kubernetes/web/frontend"
)

// The web frontend's name, and its Kubernetes Service's.
const serviceName = "web"

const (
	flagGreeterTimeout = "greeter_timeout"
	flagShowCounts     = "show_counts"
)

func main() { k8s.Main(serviceName, run) }

func run() error {
	flushTraces, err := k8s.SetupTracing(context.Background(), serviceName)
	if err != nil {
		return err
	}
	defer flushTraces()

	timeout := frontend.DefaultGreeterTimeout
	var showCounts bool
	var configFile string
	svc := k8s.NewWebService(serviceName,
		web.Flags(&cli.DurationFlag{
			Name:    flagGreeterTimeout,
			EnvVars: []string{"MICRO_GREETER_TIMEOUT"},
			Value:   frontend.DefaultGreeterTimeout,
			Usage:   "The longest the frontend waits for the greeter before answering 504",
		}, &cli.BoolFlag{
			Name:    flagShowCounts,
			EnvVars: []string{"MICRO_SHOW_COUNTS"},
			Value:   true,
			Usage:   "Ask the stats service how many times each greeted name was greeted, and show it",
		}, k8s.ConfigFileFlag(&configFile)),
		web.Action(func(c *cli.Context) {
			timeout, showCounts = c.Duration(flagGreeterTimeout), c.Bool(flagShowCounts)
		}),
	)
	switch err := svc.Init(); {
	case errors.Is(err, k8s.ErrHelp):
		return nil
	case err != nil:
		return fmt.Errorf("initialising: %w", err)
	case timeout <= 0:
		return errors.New("--" + flagGreeterTimeout + " (MICRO_GREETER_TIMEOUT) must be positive")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	config, err := k8s.LoadConfig(ctx, configFile, frontend.ParseConfig)
	if err != nil {
		return err
	}
	client := svc.Options().Service.Client()
	greeter := greeterv1.NewGreeterService(greeterv1.ServiceName, client)
	var stats statsv1.StatsService
	if showCounts {
		stats = statsv1.NewStatsService(statsv1.ServiceName, client)
	}
	svc.Handle("/", frontend.New(greeter, stats, timeout, config.Get))

	// Run serves until SIGTERM or SIGINT, then stops taking requests and
	// drains the ones in flight (at most k8s.ShutdownTimeout).
	return svc.Run()
}
