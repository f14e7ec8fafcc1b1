package k8s

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"

	"github.com/urfave/cli/v2"
	"go-micro.dev/v6"
)

// FlagFastPaths (--fast_paths=false) or EnvFastPaths (MICRO_FAST_PATHS=false)
// switches the fast paths off: every call then goes through go-micro's own
// gRPC server and client, as they are (see fastServer and fastClient, and
// docs/design.md for what differs). A client made by NewClient reads the
// variable only.
const (
	FlagFastPaths = "fast_paths"
	EnvFastPaths  = "MICRO_FAST_PATHS"
)

// fastPathsFlag is --fast_paths, which sets on.
func fastPathsFlag(on *atomic.Bool) cli.Flag {
	return &cli.BoolFlag{
		Name:    FlagFastPaths,
		EnvVars: []string{EnvFastPaths},
		Value:   true,
		Usage:   "Serve and send unary calls through pkg/k8s's fast paths; false: through go-micro's own server and client",
		Action:  func(_ *cli.Context, v bool) error { on.Store(v); return nil },
	}
}

// fastPathsSwitch is the switch of a new server or client, as EnvFastPaths
// sets it: on unless it says false. A value that is not a boolean is an
// error, which the caller reports.
func fastPathsSwitch() (*atomic.Bool, error) {
	on := new(atomic.Bool)
	on.Store(true)
	v, ok := os.LookupEnv(EnvFastPaths)
	if !ok || v == "" {
		return on, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return on, fmt.Errorf("%s=%q: want true or false", EnvFastPaths, v)
	}
	on.Store(b)
	return on, nil
}

// FastPaths switches the fast paths of a service made by NewService on or
// off (on by default, or as EnvFastPaths says; the flag, parsed by the
// service's Init, comes last): off, its server and client are go-micro's
// own.
func FastPaths(on bool) micro.Option {
	return func(o *micro.Options) {
		if s, ok := o.Server.(*fastServer); ok {
			s.on.Store(on)
		}
		if c, ok := o.Client.(*fastClient); ok {
			c.on.Store(on)
		}
	}
}
