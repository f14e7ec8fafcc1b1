// Command stats counts the greetings: it consumes the greeter's events
// (greeter.v1.Greeted, from NATS JetStream) and serves the Stats API
// (proto/stats/v1) over gRPC.
//
// It listens on 0.0.0.0:8080 unless --server_address or MICRO_SERVER_ADDRESS
// says otherwise, and finds NATS at nats://nats:4222 unless --events_address
// or MICRO_EVENTS_ADDRESS says otherwise; every other go-micro flag works
// too (--help lists them).
package main

import (
	"context"
	"fmt"

	"github.com/micro/kubernetes/pkg/k8s"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
	statsv1 "github.com/micro/kubernetes/proto/stats/v1"
	"github.com/micro/kubernetes/services/stats/handler"
)

func main() { k8s.Main(statsv1.ServiceName, run) }

func run() error {
	flushTraces, err := k8s.SetupTracing(context.Background(), statsv1.ServiceName)
	if err != nil {
		return err
	}
	defer flushTraces()

	svc := k8s.NewService(statsv1.ServiceName)
	svc.Init()

	// The counts live in NATS too, beside the events (a key-value bucket).
	js, err := k8s.JetStream(svc)
	if err != nil {
		return err
	}
	counts := handler.NewCounts(js)
	// Every replica consumes the greeter's stream as one consumer, named
	// "stats": each event is counted by one of them.
	if err := k8s.Subscribe(svc, greeterv1.ServiceName, counts.Count); err != nil {
		return err
	}
	if err := statsv1.RegisterStatsHandler(svc.Server(), handler.Stats{Counts: counts}); err != nil {
		return fmt.Errorf("registering the Stats handler: %w", err)
	}

	// Run serves until SIGTERM or SIGINT, then stops taking requests, drains
	// the ones in flight, and counts the events it holds (k8s.Subscribe).
	return svc.Run()
}
