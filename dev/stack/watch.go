package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/micro/kubernetes/pkg/k8s"
)

// PollInterval is how often Watch looks at the sources. Polling a few
// hundred files costs next to nothing, needs no dependency, and sees every
// editor's way of saving (in place, or a new file renamed over the old).
const PollInterval = 250 * time.Millisecond

// Watch rebuilds each binary whose sources change and restarts the
// processes that run it, one at a time, each waited for until it serves, as
// go-micro's `micro run` reloads a service on change. The others keep
// running. A build that fails is printed, and what runs keeps running the
// last build that compiled. A file written since builtAt, the start of
// the build the stack runs, counts as a change. It returns when ctx ends.
func (s *Stack) Watch(ctx context.Context, root string, builtAt time.Time) error {
	ts, err := targets(root)
	if err != nil {
		return err
	}
	src, err := sources(ctx, root, ts)
	if err != nil {
		return err
	}
	last := fingerprints(slices.Collect(maps.Keys(src)))
	for path := range last {
		if info, err := os.Stat(path); err == nil && !info.IsDir() && info.ModTime().After(builtAt) {
			last[path] = "written during the first build"
		}
	}
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		now := fingerprints(slices.Collect(maps.Keys(src)))
		if maps.Equal(now, last) {
			continue
		}
		seen := time.Now()
		// An editor or a formatter may write several files for one save:
		// build once they are all written.
		for range 8 {
			time.Sleep(PollInterval)
			again := fingerprints(slices.Collect(maps.Keys(src)))
			if maps.Equal(again, now) {
				break
			}
			now = again
		}
		var changed []target
		for _, t := range ts {
			for path, fp := range now {
				if fp != last[path] && slices.Contains(src[path], t.name) {
					changed = append(changed, t)
					break
				}
			}
		}
		last = now
		s.rebuild(ctx, root, changed, seen)
		// The imports may have changed: watch what the binaries are built
		// from now. A file edited during the build keeps the fingerprint it
		// had before, so that edit is seen at the next tick.
		if next, err := sources(ctx, root, ts); err == nil {
			src = next
			fresh := fingerprints(slices.Collect(maps.Keys(src)))
			for path := range fresh {
				if fp, ok := last[path]; ok {
					fresh[path] = fp
				}
			}
			last = fresh
		}
	}
}

// rebuild builds these targets beside the running binaries, swaps in each
// one that changed, and reloads the processes that run it.
func (s *Stack) rebuild(ctx context.Context, root string, ts []target, seen time.Time) {
	var names []string
	for _, t := range ts {
		names = append(names, t.name)
	}
	s.say("%s changed: rebuilding", strings.Join(names, ", "))
	// Built into a folder of its own, then renamed over the old binary:
	// a process starting meanwhile never runs a half-written file.
	next := filepath.Join(s.dir, ".next")
	defer os.RemoveAll(next)
	if err := build(ctx, root, next, ts); err != nil {
		if ctx.Err() != nil {
			return // stopping
		}
		s.say("the build failed; everything keeps running the last build that compiled.\n%v", err)
		return
	}
	var reloaded []string
	for _, t := range ts {
		built, current := filepath.Join(next, t.name), filepath.Join(s.dir, t.name)
		if same, err := sameContent(built, current); err != nil || same {
			continue // e.g. a comment: the same binary
		}
		if err := os.Rename(built, current); err != nil {
			s.say("installing the new %s: %v", t.name, err)
			continue
		}
		for _, name := range s.order {
			if s.binary(name) != t.name {
				continue
			}
			if len(reloaded) > 0 && s.binary(reloaded[len(reloaded)-1]) == t.name {
				// A replica waits until its callers have found the one
				// before it again, as a rollout waits for a new pod, so
				// that one of them always takes calls.
				time.Sleep(replicaGap)
			}
			if err := s.reload(ctx, name); err != nil {
				s.say("restarting %s: %v", name, err)
				continue
			}
			reloaded = append(reloaded, name)
		}
	}
	if len(reloaded) == 0 {
		s.say("rebuilt in %s; no binary changed, nothing restarted", time.Since(seen).Round(100*time.Millisecond))
		return
	}
	s.say("%s restarted on the new build, serving %s after the change was seen",
		strings.Join(reloaded, ", "), time.Since(seen).Round(100*time.Millisecond))
}

// replicaGap is how long the callers of a restarted process may take to
// connect to it again: pkg/k8s's longest backoff, and its jitter.
const replicaGap = k8s.ReconnectMaxDelay * 5 / 4

// binary is the binary a process runs.
func (s *Stack) binary(name string) string {
	if b := s.bins[name]; b != "" {
		return b
	}
	return name
}

// sources maps every file and folder a binary is built from to the
// binaries built from it: the Go and embedded files of each package of the
// workspace it imports, their folders (for a Go file added or removed), the
// go.mod and go.sum of their modules, and go.work. Packages from the module
// cache do not change.
func sources(ctx context.Context, root string, ts []target) (map[string][]string, error) {
	args := []string{"list", "-e", "-deps", "-json=ImportPath,Dir,GoFiles,CgoFiles,EmbedFiles,Deps,Module"}
	for _, t := range ts {
		args = append(args, t.pkg)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w\n%s", err, stderr.String())
	}
	type pkg struct {
		ImportPath, Dir               string
		GoFiles, CgoFiles, EmbedFiles []string
		Deps                          []string
		Module                        *struct {
			Main       bool
			Dir, GoMod string
		}
	}
	byPath, byDir := map[string]pkg{}, map[string]pkg{}
	for d := json.NewDecoder(bytes.NewReader(out)); ; {
		var p pkg
		if err := d.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list: %w", err)
		}
		if p.Module != nil && p.Module.Main { // a package of the workspace
			byPath[p.ImportPath], byDir[p.Dir] = p, p
		}
	}
	src := map[string][]string{}
	add := func(path, name string) {
		if !slices.Contains(src[path], name) {
			src[path] = append(src[path], name)
		}
	}
	for _, t := range ts {
		main, ok := byDir[filepath.Join(root, t.pkg)]
		if !ok {
			return nil, fmt.Errorf("go list did not list %s", t.pkg)
		}
		add(filepath.Join(root, "go.work"), t.name)
		add(filepath.Join(root, "go.work.sum"), t.name)
		built := []pkg{main}
		for _, path := range main.Deps {
			if p, ok := byPath[path]; ok {
				built = append(built, p)
			}
		}
		for _, p := range built {
			add(p.Dir, t.name)
			for _, f := range slices.Concat(p.GoFiles, p.CgoFiles, p.EmbedFiles) {
				add(filepath.Join(p.Dir, f), t.name)
			}
			add(p.Module.GoMod, t.name)
			add(filepath.Join(p.Module.Dir, "go.sum"), t.name)
		}
	}
	return src, nil
}

// fingerprints say, of each path, what a change would change: a file's size
// and modification time; a folder's Go files, by name; "" for nothing there.
func fingerprints(paths []string) map[string]string {
	fps := make(map[string]string, len(paths))
	for _, path := range paths {
		info, err := os.Stat(path)
		switch {
		case err != nil:
			fps[path] = ""
		case info.IsDir():
			entries, _ := os.ReadDir(path)
			var names []string
			for _, e := range entries {
				if n := e.Name(); strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
					names = append(names, n)
				}
			}
			fps[path] = strings.Join(names, " ")
		default:
			fps[path] = fmt.Sprint(info.Size(), " ", info.ModTime().UnixNano())
		}
	}
	return fps
}

// sameContent says whether two files hold the same bytes.
func sameContent(a, b string) (bool, error) {
	x, err := os.ReadFile(a)
	if err != nil {
		return false, err
	}
	y, err := os.ReadFile(b)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return bytes.Equal(x, y), nil
}
