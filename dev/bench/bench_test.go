package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The bench harness runs a few short rounds and reports sane numbers; the
// numbers themselves are make bench's, not a test's.
// Building is bounded only by the test binary's own -timeout: on a busy
// machine with empty caches it takes minutes, and must not eat the bound of
// the measurement.
func TestBenchHarnessReports(t *testing.T) {
	bin := t.TempDir()
	if err := Build(t.Context(), bin, ""); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	r, err := Run(ctx, Config{Saturation: 300 * time.Millisecond, Fixed: 300 * time.Millisecond, Rounds: 1, Workers: 4}, bin)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) < 20 {
		t.Fatalf("%d rows", len(r.Rows))
	}
	for _, row := range r.Rows {
		// A brief overload may refuse nothing, and a publisher drop
		// nothing: those rows' 0 is none.
		refusals := strings.Contains(row.Measure, "refusal p99") || strings.Contains(row.Measure, "dropped")
		if row.Project < 0 || row.Project == 0 && !refusals || row.Baseline <= 0 {
			t.Errorf("%s: project %v, baseline %v: want both measured", row.Measure, row.Project, row.Baseline)
		}
	}
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "latest.md"))
	if err != nil || !strings.Contains(string(md), "| greeter RPC: throughput at saturation |") {
		t.Fatalf("latest.md: %v\n%s", err, md)
	}
}

// Built as of a commit (here the checked-out one: only the measured code
// differs), every binary is there; a name that is no commit is an error that
// names it.
func TestBuildAtCommit(t *testing.T) {
	bin := t.TempDir()
	if err := Build(t.Context(), bin, "HEAD"); err != nil {
		t.Fatal(err)
	}
	for name := range binaries {
		if fi, err := os.Stat(filepath.Join(bin, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A binary that refuses its flags (a commit older than today's) says
	// why at once, not after the wait for it to be ready.
	_, _, err := (&bench{bin: bin}).start(project, "greeter", []string{"--no_such_flag"}, nil, "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "flag provided but not defined: -no_such_flag") {
		t.Errorf("starting with a flag it lacks: %v, want the binary's own complaint", err)
	}
	err = Build(t.Context(), t.TempDir(), "no-such-commit")
	if err == nil || !strings.Contains(err.Error(), `"no-such-commit"`) {
		t.Fatalf("got %v, want an error naming the commit", err)
	}
}
