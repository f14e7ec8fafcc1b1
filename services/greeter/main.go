// Command greeter serves the Greeter API (proto/greeter/v1) over gRPC.
//
// It listens on 0.0.0.0:8080 unless --server_address or MICRO_SERVER_ADDRESS
// says otherwise; every other go-micro flag works too (--help lists them).
package main

import (
	"context"
	"fmt"

	"go-micro.dev/v6"

	"github.com/micro/kubernetes/pkg/k8s"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
	"github.com/micro/kubernetes/services/greeter/handler"
)

func main() { k8s.Main(greeterv1.ServiceName, run) }

func run() error {
	flushTraces, err := k8s.SetupTracing(context.Background(), greeterv1.ServiceName)
	if err != nil {
		return err
	}
	defer flushTraces()

	var configFile string
	svc := k8s.NewService(greeterv1.ServiceName, micro.Flags(k8s.ConfigFileFlag(&configFile)))
	svc.Init()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	config, err := k8s.LoadConfig(ctx, configFile, handler.ParseConfig)
	if err != nil {
		return err
	}
	h := handler.Greeter{Config: config.Get}
	// Every greeting is published as an event (to NATS, --events_address);
	// the greeting never waits for it.
	events, err := k8s.NewPublisher(svc)
	if err != nil {
		return err
	}
	h.Publish = events.Publish
	if err := greeterv1.RegisterGreeterHandler(svc.Server(), h); err != nil {
		return fmt.Errorf("registering the Greeter handler: %w", err)
	}

	// Run serves until SIGTERM or SIGINT, then stops taking requests and
	// drains the ones in flight (at most k8s.ShutdownTimeout).
	return svc.Run()
}
