// Command health is the health-check sidecar: it runs in the pod of a go-micro
// service and serves GET /health for the kubelet's liveness probe, answering
// it by calling the service's Debug.Health RPC over loopback.
//
// Its flags are the original sidecar's (--health_address, --server_name,
// --server_address) plus --health_timeout; each has a MICRO_ variable.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"go-micro.dev/v6"

	"github.com/micro/kubernetes/health/probe"
	"github.com/micro/kubernetes/pkg/k8s"
	"github.com/micro/kubernetes/pkg/k8s/httpapi"
)

// The flag names and defaults, read by the manifests' consistency tests too.
const (
	FlagHealthAddress  = "health_address"
	FlagHealthTimeout  = "health_timeout"
	FlagServerName     = "server_name"    // a go-micro flag
	FlagServerAddress  = "server_address" // a go-micro flag
	DefaultHealthAddr  = "0.0.0.0:8081"   // all interfaces: the kubelet calls the pod IP
	DefaultServerAddr  = "127.0.0.1:8080" // the service in the same pod
	DefaultTimeout     = time.Second
	HealthPath         = "/health"
	shutdownGracePause = 5 * time.Second
)

type config struct {
	healthAddress, serverName, serverAddress string
	timeout                                  time.Duration
}

func main() {
	var cfg config
	svc := k8s.NewService("health",
		micro.Flags(
			&cli.StringFlag{Name: FlagHealthAddress, EnvVars: []string{"MICRO_HEALTH_ADDRESS"}, Value: DefaultHealthAddr,
				Usage: "Address the sidecar serves " + HealthPath + " on"},
			&cli.DurationFlag{Name: FlagHealthTimeout, EnvVars: []string{"MICRO_HEALTH_TIMEOUT"}, Value: DefaultTimeout,
				Usage: "The longest a check waits for Debug.Health"},
		),
		micro.Action(func(c *cli.Context) error {
			cfg = config{
				healthAddress: c.String(FlagHealthAddress),
				serverName:    c.String(FlagServerName),
				serverAddress: c.String(FlagServerAddress),
				timeout:       c.Duration(FlagHealthTimeout),
			}
			if cfg.serverAddress == "" {
				cfg.serverAddress = DefaultServerAddr
			}
			return cfg.validate()
		}),
	)
	svc.Init()

	mux := http.NewServeMux()
	mux.Handle("GET "+HealthPath, probe.Checker{
		Client:  svc.Client(),
		Service: cfg.serverName,
		Address: cfg.serverAddress,
		Timeout: cfg.timeout,
	})
	srv := &http.Server{
		Addr:              cfg.healthAddress,
		Handler:           httpapi.Router(mux),
		ReadHeaderTimeout: cfg.timeout,
		WriteTimeout:      2 * cfg.timeout,
		MaxHeaderBytes:    8 << 10,
	}

	if err := run(srv); err != nil {
		slog.Error("health sidecar stopped", "err", err)
		os.Exit(1)
	}
}

func (c config) validate() error {
	switch {
	case c.serverName == "":
		return cli.Exit("--"+FlagServerName+" (MICRO_SERVER_NAME) is required: the go-micro name of the service to check", 2)
	case c.healthAddress == "":
		return cli.Exit("--"+FlagHealthAddress+" (MICRO_HEALTH_ADDRESS) must not be empty", 2)
	case c.timeout <= 0:
		return cli.Exit(fmt.Sprintf("--%s (MICRO_HEALTH_TIMEOUT) must be positive, got %s", FlagHealthTimeout, c.timeout), 2)
	}
	return nil
}

// run serves until SIGTERM or SIGINT, then lets in-flight checks finish.
func run(srv *http.Server) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	slog.Info("health sidecar listening", "address", srv.Addr)

	select {
	case err := <-errc:
		return fmt.Errorf("serving %s: %w", srv.Addr, err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGracePause)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}
