// Command bench measures what go-micro and the web hop cost: the real
// binaries against a plain gRPC baseline (baseline/), on loopback, in one
// run, alternating the two to cancel the machine's drift. `make bench` runs
// it; it prints a table of ratios and writes it to results/. With
// -project-ref, the project is built as of that commit, against the same
// baseline: a change is weighed by comparing the two runs' ratios.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	cfg := Config{}
	flag.DurationVar(&cfg.Saturation, "saturation", 4*time.Second, "length of each saturation run")
	flag.DurationVar(&cfg.Fixed, "fixed", 2*time.Second, "length of each fixed-rate run")
	flag.IntVar(&cfg.Rounds, "rounds", 5, "saturation runs, and fixed-rate runs, of each side, alternated (each a pair with the baseline)")
	flag.IntVar(&cfg.Workers, "workers", 32, "requests in flight at saturation")
	out := flag.String("out", "dev/bench/results", "folder for latest.json and latest.md")
	ref := flag.String("project-ref", "", "build the project as of this commit instead of the working tree (the baseline is always the working tree's)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	report, err := buildAndRun(ctx, cfg, *ref)
	if err != nil {
		slog.Error("bench failed", "err", err)
		os.Exit(1)
	}
	fmt.Print(report.Markdown())
	if err := report.Write(*out); err != nil {
		slog.Error("writing the results", "err", err)
		os.Exit(1)
	}
	fmt.Println("written to", filepath.Join(*out, "latest.{json,md}"))
}

func buildAndRun(ctx context.Context, cfg Config, ref string) (Report, error) {
	bin, err := os.MkdirTemp("", "bench-")
	if err != nil {
		return Report{}, err
	}
	defer os.RemoveAll(bin)
	if err := Build(ctx, bin, ref); err != nil {
		return Report{}, err
	}
	r, err := Run(ctx, cfg, bin)
	r.ProjectRef = ref
	return r, err
}
