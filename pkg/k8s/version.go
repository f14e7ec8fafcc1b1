package k8s

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
)

// version is the build's version, stamped by the linker:
//
//	go build -ldflags "-X github.com/micro/kubernetes/pkg/k8s.version=v1.2.3"
//
// skaffold.yaml stamps each image with its tag, the Makefile with git
// describe. A build that is not stamped says "dev".
var version = "dev"

// Version is the build's version.
func Version() string { return version }

// PrintVersion prints "name version V" to w, as urfave/cli does, and
// returns true when args (without the program name) ask for it with
// --version or -v. go-micro lists and prints --version too, but then starts
// the service anyway, so a main calls this before initialising one.
func PrintVersion(w io.Writer, name string, args []string) bool {
	if !slices.Contains(args, "--version") && !slices.Contains(args, "-v") {
		return false
	}
	fmt.Fprintf(w, "%s version %s\n", name, version)
	return true
}

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
