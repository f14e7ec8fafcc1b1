package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/micro/kubernetes/pkg/k8s"
	"github.com/micro/kubernetes/pkg/k8s/httpapi"
)

// defaultHealthAddress is where wait answers the probes: the port every
// pod of the application serves on.
const defaultHealthAddress = "0.0.0.0:8080"

// waitCommand is the main process of the toolkit's pod: it runs until
// stopped, so that `kubectl exec deploy/micro -- micro call ...` has a
// container to run in. kubectl run -i would need none, but it attaches
// after the container starts, and loses what a call that quick printed
// before that.
func waitCommand() *cli.Command {
	return &cli.Command{
		Name:  "wait",
		Usage: "Run until SIGTERM, answering GET /health: the toolkit pod's main process, for kubectl exec",
		Flags: []cli.Flag{&cli.StringFlag{
			Name:  "health_address",
			Value: defaultHealthAddress,
			Usage: "Where to answer GET /health, the pod's probes",
		}},
		Action: func(c *cli.Context) error {
			flushLog, err := k8s.SetupLogging()
			if err != nil {
				return err
			}
			defer flushLog()
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGTERM, os.Interrupt)
			defer stop()
			k8s.LogStart("micro", "health_address", c.String("health_address"))
			return httpapi.ServeHealth(ctx, c.String("health_address"))
		},
	}
}
