package main

import (
	"context"

	"github.com/urfave/cli/v2"
	"go-micro.dev/v6/client"

	statsv1 "github.com/micro/kubernetes/proto/stats/v1"
	"github.com/micro/kubernetes/web/frontend"
)

// The count under each greeting: the web asks the stats service
// (services/stats) how many times the name has been greeted. A fork
// without the events deletes this file and its two uses in main.go
// (README, "Forking").

// showCounts is --show_counts, set when the flags are parsed.
var showCounts = true

func countsFlag() cli.Flag {
	return &cli.BoolFlag{
		Name:        "show_counts",
		EnvVars:     []string{"MICRO_SHOW_COUNTS"},
		Value:       true,
		Destination: &showCounts,
		Usage:       "Ask the stats service how many times each greeted name was greeted, and show it",
	}
}

// counts are the frontend's options that show the counts, unless
// --show_counts=false.
func counts(c client.Client) []frontend.Option {
	if !showCounts {
		return nil
	}
	return []frontend.Option{frontend.WithCounts(stats{statsv1.NewStatsService(statsv1.ServiceName, c)})}
}

// stats is the stats service as a frontend.Counter.
type stats struct{ statsv1.StatsService }

func (s stats) Count(ctx context.Context, name string) (uint64, error) {
	rsp, err := s.Get(ctx, &statsv1.GetRequest{Name: name})
	return rsp.GetCount(), err
}
