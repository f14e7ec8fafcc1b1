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

	"github.com/micro/kubernetes/health/probe"
	"github.com/micro/kubernetes/pkg/k8s"
	"github.com/micro/kubernetes/pkg/k8s/httpapi"
)

const (
	shutdownTimeout = 5 * time.Second
	maxBody         = 1 << 10 // no route takes a body
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
	app := &cli.App{
		Name:    "health",
		Version: k8s.Version(),
		Usage:   "answer GET " + probe.Path + " by calling a go-micro service's Debug.Health",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "health_address", EnvVars: []string{"MICRO_HEALTH_ADDRESS"}, Value: probe.DefaultAddress,
				Usage: "Address the sidecar serves " + probe.Path + " on"},
			&cli.StringFlag{Name: "server_name", EnvVars: []string{"MICRO_SERVER_NAME"},
				Usage: "The go-micro name of the service to check (required)"},
			&cli.StringFlag{Name: "server_address", EnvVars: []string{"MICRO_SERVER_ADDRESS"},
				Value: net.JoinHostPort("127.0.0.1", strconv.Itoa(k8s.DefaultPort)),
				Usage: "Address of the service to check: the service in the same pod"},
			&cli.DurationFlag{Name: "health_timeout", EnvVars: []string{"MICRO_HEALTH_TIMEOUT"}, Value: probe.DefaultTimeout,
				Usage: "The longest a check waits for Debug.Health"},
		},
		Action: func(c *cli.Context) error {
			checker := probe.Checker{
				Client:  k8s.NewClient(),
				Service: c.String("server_name"),
				Address: c.String("server_address"),
				Timeout: c.Duration("health_timeout"),
			}
			switch {
			case checker.Service == "":
				return cli.Exit("--server_name (MICRO_SERVER_NAME) is required: the go-micro name of the service to check", 2)
			case checker.Address == "":
				return cli.Exit("--server_address (MICRO_SERVER_ADDRESS) must not be empty", 2)
			case checker.Timeout <= 0:
				return cli.Exit(fmt.Sprintf("--health_timeout (MICRO_HEALTH_TIMEOUT) must be positive, got %s", checker.Timeout), 2)
			}
			return run(newServer(c.String("health_address"), checker))
		},
	}
	if err := app.Run(os.Args); err != nil {
		slog.Error("health sidecar stopped", "err", err)
		os.Exit(1)
	}
}

func newServer(addr string, checker probe.Checker) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET "+probe.Path, checker)
	mux.HandleFunc("GET "+probe.LivePath, func(w http.ResponseWriter, _ *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, probe.Status{Status: "ok"})
	})
	return &http.Server{
		Addr:              addr,
		Handler:           httpapi.LogRequests(httpapi.LimitBody(maxBody, httpapi.Router(mux))),
		ReadHeaderTimeout: checker.Timeout,
		WriteTimeout:      2 * checker.Timeout,
		MaxHeaderBytes:    8 << 10,
	}
}

// run serves until SIGTERM or SIGINT, then lets in-flight checks finish.
func run(srv *http.Server) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	k8s.LogStart("health", "address", srv.Addr)

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
