// Package tool builds the pinned command-line tools the Makefile and the
// cluster tier run (skaffold, kustomize, the NATS server, and the cluster's
// own binaries: Kubernetes, containerd, the CNI plugins, CoreDNS,
// kube-router) from the Go module that pins each one, into a cache
// directory keyed by module version and by a digest of how it is built. A warm run finds them there and builds nothing;
// a version bump in a go.mod, or a changed flag, builds the new one beside
// the old.
package tool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// A Tool is one command (or a few built together) and the module that pins
// it.
type Tool struct {
	// Name names its folder in the cache.
	Name string
	// ModuleDir is the directory of the go.mod whose requirements pin it,
	// relative to the repository root.
	ModuleDir string
	// Module is the module whose version keys the cache.
	Module string
	// Packages are the main packages to build into the tool's folder; the
	// first is the command Build returns. The others are found beside it:
	// containerd looks for its shim on its PATH, and the CNI plugins are
	// found in one folder.
	Packages []string
	// LDFlags stamp the module version where the tool expects it; nil for
	// none.
	LDFlags func(version string) string
	// Env is added to go build's environment; Tags are its build tags.
	Env  []string
	Tags string
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
	// Kubernetes is the control plane's commands, each node's and kubectl,
	// in one go build: it loads their package graph once and links two at
	// a time, where one build each linked them one after the other. The
	// first is kube-apiserver; the others are beside it.
	Kubernetes = Tool{Name: "kubernetes", ModuleDir: "tools/kubernetes", Module: "k8s.io/kubernetes",
		Packages: []string{
			"k8s.io/kubernetes/cmd/kube-apiserver",
			"k8s.io/kubernetes/cmd/kube-controller-manager",
			"k8s.io/kubernetes/cmd/kube-scheduler",
			"k8s.io/kubernetes/cmd/kubelet",
			"k8s.io/kubernetes/cmd/kube-proxy",
			"k8s.io/kubernetes/cmd/kubectl",
		},
		LDFlags: kubernetesLDFlags,
	}
	Skaffold = Tool{
		Name: "skaffold", ModuleDir: "tools/skaffold", Module: "github.com/GoogleContainerTools/skaffold/v2",
		Packages: []string{"github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold"},
		LDFlags: func(v string) string {
			return "-X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version=" + v
		},
	}
	Kustomize = Tool{Name: "kustomize", ModuleDir: "tools/kustomize", Module: "sigs.k8s.io/kustomize/kustomize/v5",
		Packages: []string{"sigs.k8s.io/kustomize/kustomize/v5"}}
	// Containerd is static (no cgo) and without btrfs, which would need
	// its C headers.
	Containerd = Tool{Name: "containerd", ModuleDir: "tools/containerd", Module: "github.com/containerd/containerd/v2",
		Packages: []string{
			"github.com/containerd/containerd/v2/cmd/containerd",
			"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
			"github.com/containerd/containerd/v2/cmd/ctr",
		},
		Env: []string{"CGO_ENABLED=0"}, Tags: "no_btrfs",
	}
	CNIPlugins = Tool{Name: "cni-plugins", ModuleDir: "tools/cni", Module: "github.com/containernetworking/plugins",
		Packages: []string{
			"github.com/containernetworking/plugins/plugins/main/bridge",
			"github.com/containernetworking/plugins/plugins/ipam/host-local",
			"github.com/containernetworking/plugins/plugins/main/loopback",
			"github.com/containernetworking/plugins/plugins/meta/portmap",
		},
		Env: []string{"CGO_ENABLED=0"},
	}
	// CoreDNS with only the plugins the cluster tier uses (tools/coredns),
	// static: it runs in an image of its own binary alone.
	CoreDNS = Tool{Name: "coredns", ModuleDir: "tools/coredns", Module: "github.com/coredns/coredns",
		Packages: []string{"github.com/micro/kubernetes/tools/coredns"}, Env: []string{"CGO_ENABLED=0"}}
	// NATSServer is the events' broker, static: make run starts it, and the
	// cluster tier puts it in an image under the official image's reference.
	NATSServer = Tool{Name: "nats-server", ModuleDir: "tools/nats-server", Module: "github.com/nats-io/nats-server/v2",
		Packages: []string{"github.com/nats-io/nats-server/v2"}, Env: []string{"CGO_ENABLED=0"}}
	KubeRouter = Tool{Name: "kube-router", ModuleDir: "tools/kube-router", Module: "github.com/cloudnativelabs/kube-router/v2",
		Packages: []string{"github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"}}
)

// All are every tool.
func All() []Tool {
	return []Tool{Kubernetes, Skaffold, Kustomize, Containerd, CNIPlugins, CoreDNS, KubeRouter, NATSServer}
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

// Build returns the path of the tool's command in cache, building its
// packages first if that version is not there yet. Progress goes to log.
func (t Tool) Build(ctx context.Context, root, cache string, log io.Writer) (string, error) {
	version, err := t.Version(ctx, root)
	if err != nil {
		return "", err
	}
	// Stripped of the symbol table and DWARF, as these projects' own
	// releases are: a link takes half the time (kube-apiserver's 21.5 s,
	// then 10.1 s) and a binary a third less space. Panics still print
	// their stacks.
	ldflags := "-s -w"
	if t.LDFlags != nil {
		ldflags += " " + t.LDFlags(version)
	}
	args := []string{"build", "-ldflags", ldflags}
	if t.Tags != "" {
		args = append(args, "-tags", t.Tags)
	}
	args = append(args, t.Packages...)
	key, err := t.recipe(root, args)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, t.Name+"-"+version+"-"+key)
	bin := filepath.Join(dir, binaryName(t.Packages[0]))
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Fprintf(log, "building %s %s into %s (once per version and recipe)\n", t.Name, version, dir)
	start := time.Now()
	// Built into a temporary folder and renamed, so an interrupted build
	// never leaves a folder that a later run would take as complete.
	tmp := dir + ".tmp"
	for _, d := range []string{dir, tmp} {
		if err := os.RemoveAll(d); err != nil {
			return "", fmt.Errorf("clear %s: %w", d, err)
		}
	}
	args = slices.Insert(args, 1, "-o", tmp+string(filepath.Separator))
	cmd := goCmd(ctx, filepath.Join(root, t.ModuleDir), args...)
	cmd.Env = append(cmd.Env, t.Env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s %s: %w", t.Name, version, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("install %s: %w", t.Name, err)
	}
	fmt.Fprintf(log, "built %s %s in %s\n", t.Name, version, time.Since(start).Round(time.Second))
	return bin, nil
}

// recipe is a short digest of what decides the binary besides the version:
// the build's arguments and environment, and the files of the pinning
// module (its go.sum, and a main package of its own, as CoreDNS's plugin
// list). A cached binary built otherwise (say with cgo, before Env said
// CGO_ENABLED=0) is not taken for this one.
func (t Tool) recipe(root string, args []string) (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, args, t.Env)
	dir := filepath.Join(root, t.ModuleDir)
	files, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", t.ModuleDir, err)
	}
	for _, f := range files {
		if f.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			return "", fmt.Errorf("read %s: %w", f.Name(), err)
		}
		fmt.Fprintln(h, f.Name(), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:8], nil
}

// binaryName is the name go build gives a main package's binary: its last
// element, or the one before a major version suffix (kustomize/v5).
func binaryName(pkg string) string {
	base := path.Base(pkg)
	if v := strings.TrimPrefix(base, "v"); v != base && v != "" && strings.Trim(v, "0123456789") == "" {
		return path.Base(path.Dir(pkg))
	}
	return base
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
