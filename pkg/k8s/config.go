package k8s

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"
	"go-micro.dev/v6/config"
	"go-micro.dev/v6/config/source"
	"go-micro.dev/v6/config/source/env"
	"go-micro.dev/v6/config/source/file"
)

const (
	// ConfigEnvPrefix marks the variables that override the config file:
	// APP_GREETER_GREETING sets greeter.greeting.
	ConfigEnvPrefix = "APP"
	// ConfigReloadInterval is how often the config is read again. A mounted
	// ConfigMap changes by a symlink swap, which file watches can miss.
	ConfigReloadInterval = 2 * time.Second
	// FlagConfigFile names the JSON config file; EnvConfigFile is its
	// variable, which the manifests set.
	FlagConfigFile = "config_file"
	EnvConfigFile  = "MICRO_CONFIG_FILE"
)

// ConfigFileFlag is --config_file (EnvConfigFile), written into dest.
func ConfigFileFlag(dest *string) cli.Flag {
	return &cli.StringFlag{
		Name:        FlagConfigFile,
		EnvVars:     []string{EnvConfigFile},
		Destination: dest,
		Usage:       "JSON config file, re-read while running; " + ConfigEnvPrefix + "_ variables override it",
	}
}

// Live is configuration that follows its sources while the service runs.
type Live[T any] struct {
	current atomic.Pointer[T]
}

// Get is the current configuration.
func (l *Live[T]) Get() T { return *l.current.Load() }

// LoadConfig reads the config file at path (none if empty) and the APP_
// variables through go-micro's config, merged as JSON, and parses the result
// with parse. It fails when they do not parse: a service must not start on a
// configuration it would refuse. Until ctx ends it reads them again every
// ConfigReloadInterval: a change that parses replaces the configuration; one
// that does not is logged and refused, and the last good one stays.
func LoadConfig[T any](ctx context.Context, path string, parse func(data []byte) (T, error)) (*Live[T], error) {
	opts := []config.Option{config.WithWatcherDisabled()}
	var sources []source.Source
	if path != "" {
		sources = append(sources, file.NewSource(file.WithPath(path)))
	}
	sources = append(sources, env.NewSource(env.WithStrippedPrefix(ConfigEnvPrefix)))
	for _, s := range sources {
		opts = append(opts, config.WithSource(s))
	}
	c, err := config.NewConfig(opts...)
	if err != nil {
		return nil, fmt.Errorf("reading the configuration %q: %w", path, err)
	}
	data := c.Bytes()
	first, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("invalid configuration in %q: %w", path, err)
	}
	l := &Live[T]{}
	l.current.Store(&first)
	go l.follow(ctx, c, path, data, parse)
	return l, nil
}

func (l *Live[T]) follow(ctx context.Context, c config.Config, path string, last []byte, parse func([]byte) (T, error)) {
	tick := time.NewTicker(ConfigReloadInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := c.Sync(); err != nil {
			slog.Warn("configuration unreadable, keeping the last good one", "file", path, "err", err)
			continue
		}
		data := c.Bytes()
		if bytes.Equal(data, last) {
			continue
		}
		last = data
		next, err := parse(data)
		if err != nil {
			slog.Warn("configuration change refused, keeping the last good one", "file", path, "err", err)
			continue
		}
		l.current.Store(&next)
		slog.Info("configuration changed", "file", path)
	}
}
