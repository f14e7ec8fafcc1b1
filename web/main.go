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
	"github.com/micro/kubernetes/web/frontend"
)

// The web frontend's name, and its Kubernetes Service's.
const serviceName = "web"

const flagGreeterTimeout = "greeter_timeout"

func main() { k8s.Main(serviceName, run) }

func run() error {
	flushTraces, err := k8s.SetupTracing(context.Background(), serviceName)
	if err != nil {
		return err
	}
	defer flushTraces()

	timeout := frontend.DefaultGreeterTimeout
	var configFile string
	svc := k8s.NewWebService(serviceName,
		web.Flags(&cli.DurationFlag{
			Name:    flagGreeterTimeout,
			EnvVars: []string{"MICRO_GREETER_TIMEOUT"},
			Value:   frontend.DefaultGreeterTimeout,
			Usage:   "The longest the frontend waits for the greeter before answering 504",
		}, k8s.ConfigFileFlag(&configFile), countsFlag()),
		web.Action(func(c *cli.Context) { timeout = c.Duration(flagGreeterTimeout) }),
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
	svc.Handle("/", frontend.New(greeter, timeout, config.Get, counts(client)...))

	// Run serves until SIGTERM or SIGINT, then stops taking requests and
	// drains the ones in flight (at most k8s.ShutdownTimeout).
	return svc.Run()
}
