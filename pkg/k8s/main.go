package k8s

import (
	"fmt"
	"log/slog"
	"os"
)

// logStart says which version of which service starts, and with what
// memory limit: the first line of a service's own in a pod's log.
func logStart(name string) func() error {
	return func() error {
		LogStart(name)
		return nil
	}
}

// LogStart is the start-up line of a binary that is not a go-micro service
// (the health sidecar, the load generator), as the services say it.
func LogStart(name string, attrs ...any) {
	slog.Info("starting", append(append([]any{"service", name, "version", version}, memoryLimit()...), attrs...)...)
}

// Main is the main of a go-micro binary: --version, JSON logs, the Go
// memory limit, then run, whose error is logged. It exits 2 when the
// set-up fails, 1 when run does, and flushes the log either way.
func Main(name string, run func() error) {
	if PrintVersion(os.Stdout, name, os.Args[1:]) {
		return
	}
	flushLog, err := SetupLogging()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	code := 0
	if err := SetMemoryLimit(); err != nil {
		slog.Error("memory limit", "err", err)
		code = 2
	} else if err := run(); err != nil {
		slog.Error(name+" stopped", "err", err)
		code = 1
	}
	flushLog()
	os.Exit(code)
}
