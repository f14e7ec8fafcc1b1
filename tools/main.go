// Command tools builds pinned tools into the cache (once per version) and
// prints their paths, one a line:
//
//	cd tools && GOWORK=off go run . skaffold kustomize
//
// The Makefile uses it for skaffold and kustomize, and make test-cluster for
// the control plane; see package tool.
package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"

	"github.com/micro/kubernetes/tools/tool"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "tools:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, names []string) error {
	byName := map[string]tool.Tool{}
	for _, t := range tool.All() {
		byName[t.Name] = t
	}
	if len(names) == 0 {
		return fmt.Errorf("name the tools to build, of: %s", strings.Join(slices.Sorted(maps.Keys(byName)), " "))
	}
	// This directory's parent is the repository root.
	root, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	cache, err := tool.CacheDir()
	if err != nil {
		return err
	}
	for _, name := range names {
		t, ok := byName[name]
		if !ok {
			return fmt.Errorf("unknown tool %q", name)
		}
		bin, err := t.Build(ctx, root, cache, os.Stderr)
		if err != nil {
			return err
		}
		fmt.Println(bin)
	}
	return nil
}
