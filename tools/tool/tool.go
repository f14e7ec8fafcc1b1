// Package tool builds the pinned command-line tools the Makefile and the
// cluster tests run (skaffold, kustomize, kwok, and the Kubernetes control
// plane with kubectl) from the Go module
// that pins each one, into a cache directory keyed by module version. A warm
// run finds them there and builds nothing; a version bump in a go.mod builds
// the new version beside the old.
package tool

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// A Tool is one command and the module that pins it.
type Tool struct {
	// Name is the binary's name.
	Name string
	// ModuleDir is the directory of the go.mod whose requirements pin it,
	// relative to the repository root.
	ModuleDir string
	// Module is the module whose version keys the cache.
	Module string
	// Package is the main package to build.
	Package string
	// LDFlags stamp the module version where the tool expects it; nil for
	// none.
	LDFlags func(version string) string
}

// kubernetesLDFlags stamp a Kubernetes binary's version (v1.37.2: major 1,
// minor 37): without them clients cannot parse the server's version.
func kubernetesLDFlags(version string) string {
	major, rest, _ := strings.Cut(strings.TrimPrefix(version, "v"), ".")
	minor, _, _ := strings.Cut(rest, ".")
	return "-X k8s.io/component-base/version.gitVersion=" + version +
		" -X k8s.io/component-base/version.gitMajor=" + major + " -X k8s.io/component-base/version.gitMinor=" + minor
}

// The tools, each built by `go build` in its pinning module.
var (
	APIServer         = kubernetes("kube-apiserver")
	ControllerManager = kubernetes("kube-controller-manager")
	Scheduler         = kubernetes("kube-scheduler")
	Kubectl           = kubernetes("kubectl")
	Kwok              = Tool{Name: "kwok", ModuleDir: "tools/kwok", Module: "sigs.k8s.io/kwok", Package: "sigs.k8s.io/kwok/cmd/kwok"}
	Skaffold          = Tool{
		Name: "skaffold", ModuleDir: "tools/skaffold", Module: "github.com/GoogleContainerTools/skaffold/v2",
		Package: "github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold",
		LDFlags: func(v string) string {
			return "-X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version=" + v
		},
	}
	Kustomize = Tool{Name: "kustomize", ModuleDir: "tools/kustomize", Module: "sigs.k8s.io/kustomize/kustomize/v5", Package: "sigs.k8s.io/kustomize/kustomize/v5"}
)

// All are every tool.
func All() []Tool {
	return []Tool{APIServer, ControllerManager, Scheduler, Kubectl, Kwok, Skaffold, Kustomize}
}

func kubernetes(name string) Tool {
	return Tool{Name: name, ModuleDir: "tools/kubernetes", Module: "k8s.io/kubernetes", Package: "k8s.io/kubernetes/cmd/" + name, LDFlags: kubernetesLDFlags}
}

// CacheDir is where built tools are kept: $MICRO_TOOLS_CACHE, or
// micro-kubernetes in the user's cache directory (~/.cache).
func CacheDir() (string, error) {
	if d := os.Getenv("MICRO_TOOLS_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the cache directory (set MICRO_TOOLS_CACHE): %w", err)
	}
	return filepath.Join(d, "micro-kubernetes"), nil
}

// Version is the version of the tool's module that its go.mod requires.
func (t Tool) Version(ctx context.Context, root string) (string, error) {
	out, err := goCmd(ctx, filepath.Join(root, t.ModuleDir), "list", "-m", "-f", "{{.Version}}", t.Module).Output()
	if err != nil {
		return "", fmt.Errorf("read the version of %s in %s/go.mod: %w", t.Module, t.ModuleDir, exitDetail(err))
	}
	return strings.TrimSpace(string(out)), nil
}

// Build returns the path of the tool's binary in cache, building it first if
// that version is not there yet. Progress goes to log.
func (t Tool) Build(ctx context.Context, root, cache string, log io.Writer) (string, error) {
	version, err := t.Version(ctx, root)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, t.Name+"-"+version)
	bin := filepath.Join(dir, t.Name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("make the cache directory: %w", err)
	}
	fmt.Fprintf(log, "building %s %s into %s (once per version)\n", t.Name, version, dir)
	// Built under a temporary name and renamed, so an interrupted build
	// never leaves a binary that a later run would take as complete.
	tmp := bin + ".tmp"
	args := []string{"build", "-o", tmp}
	if t.LDFlags != nil {
		args = append(args, "-ldflags", t.LDFlags(version))
	}
	cmd := goCmd(ctx, filepath.Join(root, t.ModuleDir), append(args, t.Package)...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s %s: %w", t.Name, version, err)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("install %s: %w", t.Name, err)
	}
	return bin, nil
}

// ModuleSource returns where the Go module cache holds the tool's module, for
// files it ships besides code (kwok's stages).
func (t Tool) ModuleSource(ctx context.Context, root string) (string, error) {
	out, err := goCmd(ctx, filepath.Join(root, t.ModuleDir), "mod", "download", "-json", t.Module).Output()
	if err != nil {
		return "", fmt.Errorf("download %s: %w", t.Module, exitDetail(err))
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		return "", fmt.Errorf("read where %s was downloaded: %v", t.Module, err)
	}
	return m.Dir, nil
}

// goCmd runs go in a tool module, outside the workspace: each tool module
// has its own dependency graph.
func goCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	return cmd
}

// exitDetail adds a failed command's standard error to its error.
func exitDetail(err error) error {
	if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}
