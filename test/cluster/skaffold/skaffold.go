// Package skaffold runs the pinned skaffold in the repository for the
// cluster tier, reads what it needs of skaffold.yaml, and makes the base
// image it builds on.
package skaffold

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Runner runs skaffold in the repository's root.
type Runner struct {
	bin, root string
	env       []string
}

// New returns a Runner of the skaffold binary bin, with kubectl's and
// kustomize's directories first on its PATH, and env added to its
// environment. Its global config is written to dir: no metrics, no survey,
// no update check, and the user's ~/.skaffold is left alone.
func New(bin, root, dir string, path []string, env ...string) (*Runner, error) {
	config := filepath.Join(dir, "skaffold-global.yaml")
	err := os.WriteFile(config, []byte("global:\n  collect-metrics: false\n  update-check: false\n  survey:\n    disable-prompt: true\n"), 0o600)
	if err != nil {
		return nil, fmt.Errorf("write skaffold's global config: %w", err)
	}
	path = append(path, os.Getenv("PATH"))
	env = append(os.Environ(), append(env,
		"PATH="+strings.Join(path, string(os.PathListSeparator)),
		// SKAFFOLD_CONFIG is --config, for the commands that take it;
		// the artifact cache is kept beside it, not in ~/.skaffold.
		"SKAFFOLD_CONFIG="+config,
		"SKAFFOLD_CACHE_FILE="+filepath.Join(dir, "skaffold-cache.yaml"),
		"SKAFFOLD_UPDATE_CHECK=false",
		// The tests run with GOWORK=off; ko builds the application inside
		// the workspace, as users' skaffold does.
		"GOWORK=",
	)...)
	return &Runner{bin: bin, root: root, env: env}, nil
}

// Run runs a skaffold command with stdin (nil for none) and returns its
// standard output; the error carries its output.
func (r *Runner) Run(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, r.bin, args...)
	cmd.Dir, cmd.Env, cmd.Stdin = r.root, r.env, stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("skaffold %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}

// Render returns what skaffold would apply with these profiles on. It goes
// through a file in dir: skaffold also prints notes on its standard output.
func (r *Runner) Render(ctx context.Context, dir string, profiles []string) ([]byte, error) {
	out := filepath.Join(dir, "manifests.yaml")
	args := []string{"render", "--offline=true", "--digest-source=none", "--output=" + out}
	if len(profiles) > 0 {
		args = append(args, "--profile="+strings.Join(profiles, ","))
	}
	if _, err := r.Run(ctx, nil, args...); err != nil {
		return nil, err
	}
	return os.ReadFile(out)
}

// File is what the tests read of skaffold.yaml.
type File struct {
	// Images are the artifacts built whatever the profiles.
	Images []string
	// Profiles are the profiles, with the images each adds.
	Profiles map[string][]string
}

// ReadFile reads root/skaffold.yaml.
func ReadFile(root string) (File, error) {
	b, err := os.ReadFile(filepath.Join(root, "skaffold.yaml"))
	if err != nil {
		return File{}, err
	}
	type artifacts struct {
		Build struct{ Artifacts []struct{ Image string } }
	}
	f := File{Profiles: map[string][]string{}}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var c struct {
			artifacts `json:",inline"`
			Profiles  []struct {
				Name      string
				artifacts `json:",inline"`
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
			return f, fmt.Errorf("read skaffold.yaml: %w", err)
		}
		for _, a := range c.Build.Artifacts {
			f.Images = append(f.Images, a.Image)
		}
		for _, p := range c.Profiles {
			images := f.Profiles[p.Name]
			for _, a := range p.Build.Artifacts {
				images = append(images, a.Image)
			}
			f.Profiles[p.Name] = images
		}
	}
	if len(f.Images) == 0 || len(f.Profiles) == 0 {
		return f, fmt.Errorf("skaffold.yaml: found images %v and profiles %v", f.Images, f.Profiles)
	}
	return f, nil
}

// ProfileNames returns the profiles, sorted.
func (f File) ProfileNames() []string {
	var names []string
	for n := range f.Profiles {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
