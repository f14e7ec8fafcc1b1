// Command health is the health-check sidecar: it runs in the pod of a go-micro
// service and serves GET /health for the kubelet's liveness probe, answering
// it by calling the service's Debug.Health RPC over loopback. GET /livez
// answers 200 while the sidecar itself serves, for the sidecar's own probes.
//
// Its flags are the original sidecar's (--health_address, --server_name,
// --server_address) plus --health_timeout; each has a MICRO_ variable.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"go-micro.dev/v6"

	"github.com/micro/kubernetes/health/probe"
	"github.com/micro/kubernetes/pkg/k8s"
	"github.com/micro/kubernetes/pkg/k8s/httpapi"
)

const (
	flagHealthAddress = "health_address"
	flagHealthTimeout = "health_timeout"
	flagServerName    = "server_name"    // a go-micro flag
	flagServerAddress = "server_address" // a go-micro flag
	shutdownTimeout   = 5 * time.Second
	maxBody           = 1 << 10 // no route takes a body
)

// defaultServerAddress is the service in the same pod, on its default port.
var defaultServerAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(k8s.DefaultPort))

type config struct {
	healthAddress, serverName, serverAddress string
	timeout                                  time.Duration
}

func main() {
	var cfg config
	parsed := false // stays false when the flags only asked for --help
	svc := k8s.NewService("health",
		micro.Flags(
			&cli.StringFlag{Name: flagHealthAddress, EnvVars: []string{"MICRO_HEALTH_ADDRESS"}, Value: probe.DefaultAddress,
				Usage: "Address the sidecar serves " + probe.Path + " on"},
			&cli.DurationFlag{Name: flagHealthTimeout, EnvVars: []string{"MICRO_HEALTH_TIMEOUT"}, Value: probe.DefaultTimeout,
				Usage: "The longest a check waits for Debug.Health"},
		),
		micro.Action(func(c *cli.Context) error {
			parsed = true
			cfg = config{
				healthAddress: c.String(flagHealthAddress),
				serverName:    c.String(flagServerName),
				serverAddress: c.String(flagServerAddress),
				timeout:       c.Duration(flagHealthTimeout),
			}
			if cfg.serverAddress == "" {
				cfg.serverAddress = defaultServerAddress
			}
			return cfg.validate()
		}),
	)
	svc.Init()
	if !parsed {
		return
	}

	mux := http.NewServeMux()
	mux.Handle("GET "+probe.Path, probe.Checker{
		Client:  svc.Client(),
		Service: cfg.serverName,
		Address: cfg.serverAddress,
		Timeout: cfg.timeout,
	})
	mux.HandleFunc("GET "+probe.LivePath, func(w http.ResponseWriter, _ *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, probe.Status{Status: "ok"})
	})
	srv := &http.Server{
		Addr:              cfg.healthAddress,
		Handler:           httpapi.LimitBody(maxBody, httpapi.Router(mux)),
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
		return cli.Exit("--"+flagServerName+" (MICRO_SERVER_NAME) is required: the go-micro name of the service to check", 2)
	case c.healthAddress == "":
		return cli.Exit("--"+flagHealthAddress+" (MICRO_HEALTH_ADDRESS) must not be empty", 2)
	case c.timeout <= 0:
		return cli.Exit(fmt.Sprintf("--%s (MICRO_HEALTH_TIMEOUT) must be positive, got %s", flagHealthTimeout, c.timeout), 2)
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
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}
