// Package testrun runs a test binary around an environment of processes
// (a control plane, a container runtime): set up first, then the tests,
// then torn down, also when the set-up fails and on SIGINT or SIGTERM, so
// nothing the tests started outlives them.
package testrun

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// Main sets up with setup, runs tests, and tears down with the cleanup
// setup returns (which it must return even with an error, for what it had
// started). A signal cancels setup's context, tears down, and exits 130.
// It returns the exit code for os.Exit.
func Main(what string, setup func(context.Context) (cleanup func(), err error), tests func() int) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var cleanup func()
	setUp := make(chan struct{}) // closed once cleanup is known
	var once sync.Once
	teardown := func() {
		<-setUp
		if cleanup != nil {
			once.Do(cleanup)
		}
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	go func() {
		s := <-signals
		fmt.Fprintf(os.Stderr, "%v: stopping %s\n", s, what)
		cancel() // a set-up in progress gives up, and says what to clean
		teardown()
		os.Exit(130)
	}()

	c, err := setup(ctx)
	cleanup = c
	close(setUp)
	defer teardown()
	if err != nil {
		fmt.Fprintf(os.Stderr, "setting up %s: %v\n", what, err)
		return 1
	}
	return tests()
}
