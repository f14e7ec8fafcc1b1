// Command api is the API gateway: POST /{service}/{endpoint} with a JSON body
// calls that endpoint over gRPC and answers its reply, for the endpoints the
// configuration allows (see package gateway), plus /health.
//
// It listens on 0.0.0.0:8080 unless --server_address or MICRO_SERVER_ADDRESS
// says otherwise, and finds services with the static selector
// (greeter -> greeter:8080, see pkg/k8s).
package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"
	"go-micro.dev/v6/web"

	"github.com/micro/kubernetes/api/gateway"
	"github.com/micro/kubernetes/pkg/k8s"
)

// The gateway's name, and its Kubernetes Service's.
const serviceName = "api"

const flagCallTimeout = "call_timeout"

func main() { k8s.Main(serviceName, run) }

func run() error {
	flushTraces, err := k8s.SetupTracing(context.Background(), serviceName)
	if err != nil {
		return err
	}
	defer flushTraces()

	timeout := gateway.DefaultCallTimeout
	var configFile string
	svc := k8s.NewWebService(serviceName,
		web.Flags(&cli.DurationFlag{
			Name:    flagCallTimeout,
			EnvVars: []string{"MICRO_CALL_TIMEOUT"},
			Value:   gateway.DefaultCallTimeout,
			Usage:   "The longest the gateway waits for a service before answering 504",
		}, k8s.ConfigFileFlag(&configFile)),
		web.Action(func(c *cli.Context) { timeout = c.Duration(flagCallTimeout) }),
	)
	switch err := svc.Init(); {
	case errors.Is(err, k8s.ErrHelp):
		return nil
	case err != nil:
		return fmt.Errorf("initialising: %w", err)
	case timeout <= 0:
		return errors.New("--" + flagCallTimeout + " (MICRO_CALL_TIMEOUT) must be positive")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	config, err := k8s.LoadConfig(ctx, configFile, gateway.ParseConfig)
	if err != nil {
		return err
	}
	svc.Handle("/", gateway.New(svc.Options().Service.Client(), timeout, config.Get))

	// Run serves until SIGTERM or SIGINT, then stops taking requests and
	// drains the ones in flight (at most k8s.ShutdownTimeout).
	return svc.Run()
}
