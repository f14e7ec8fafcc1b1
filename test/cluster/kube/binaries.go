package kube

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/micro/kubernetes/tools/tool"
)

// Binaries are the programs the cluster runs.
type Binaries struct {
	APIServer, ControllerManager, Scheduler, Kubelet, KubeProxy, Kubectl string
	// Containerd is containerd; its shim and ctr are beside it.
	Containerd string
	// CNIPlugins is the folder of the CNI plugins.
	CNIPlugins string
	CoreDNS    string
	// KubeRouter enforces NetworkPolicies, when a test starts it.
	KubeRouter string
	// NATSServer is the events' broker, pushed as the official image of
	// NATSTag (its version), which the manifests name.
	NATSServer, NATSTag string
	// Pause is the pods' sandbox program (./pause), NetCheck the network
	// policy tests' (./netcheck); both built each run.
	Pause, NetCheck string
	// Skaffold and Kustomize deploy the application the way users do.
	Skaffold, Kustomize string
}

// Build finds each pinned binary in the tools cache, building what is
// missing (the first run builds Kubernetes, containerd, CoreDNS and skaffold
// from source: about half an hour on two cores), and builds the pause
// program. It needs the Go module proxy, so it runs on the host, before the
// cluster's namespaces exist.
func Build(ctx context.Context, root string) (Binaries, error) {
	cache, err := tool.CacheDir()
	if err != nil {
		return Binaries{}, err
	}
	var b Binaries
	for _, t := range []struct {
		tool tool.Tool
		dest *string
	}{
		{tool.Kubernetes, &b.APIServer},
		{tool.Containerd, &b.Containerd}, {tool.CNIPlugins, &b.CNIPlugins}, {tool.CoreDNS, &b.CoreDNS}, {tool.KubeRouter, &b.KubeRouter},
		{tool.NATSServer, &b.NATSServer},
		{tool.Skaffold, &b.Skaffold}, {tool.Kustomize, &b.Kustomize},
	} {
		if *t.dest, err = t.tool.Build(ctx, root, cache, os.Stderr); err != nil {
			return b, err
		}
	}
	kubernetes := filepath.Dir(b.APIServer)
	b.ControllerManager = filepath.Join(kubernetes, "kube-controller-manager")
	b.Scheduler = filepath.Join(kubernetes, "kube-scheduler")
	b.Kubelet = filepath.Join(kubernetes, "kubelet")
	b.KubeProxy = filepath.Join(kubernetes, "kube-proxy")
	b.Kubectl = filepath.Join(kubernetes, "kubectl")
	b.CNIPlugins = filepath.Dir(b.CNIPlugins)
	version, err := tool.NATSServer.Version(ctx, root)
	if err != nil {
		return b, err
	}
	b.NATSTag = strings.TrimPrefix(version, "v")

	// The pause and netcheck programs are this module's own: static, for
	// images of their own; beside the tools, rebuilt (from the build cache)
	// every run.
	for _, p := range []struct {
		name string
		dest *string
	}{{"pause", &b.Pause}, {"netcheck", &b.NetCheck}} {
		*p.dest = filepath.Join(cache, "cluster-programs", p.name)
		build := exec.CommandContext(ctx, "go", "build", "-o", *p.dest, "./"+p.name)
		build.Dir = filepath.Join(root, "test", "cluster")
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
		if out, err := build.CombinedOutput(); err != nil {
			return b, fmt.Errorf("build the %s program: %w\n%s", p.name, err, out)
		}
	}

	// The images are built, and a copy of the repository tested, inside
	// the namespaces, where there is no network: every module the
	// workspace's packages and their tests import must be in the module
	// cache by then, and those make test's tidiness check reads (tests of
	// dependencies). Not go mod download: it fetches the whole module
	// graph, and writes what it fetched into go.work.sum.
	workspace := append(os.Environ(), "GOWORK=") // the tier runs with GOWORK=off
	modules := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}} {{.Path}}/...")
	modules.Dir, modules.Env = root, workspace
	out, err := modules.Output()
	if err != nil {
		return b, fmt.Errorf("list the workspace's modules: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(out) == 0 {
		return b, fmt.Errorf("go list -m in %s listed no module of the workspace", root)
	}
	list := []string{"list", "-deps", "-test"}
	for _, line := range lines {
		dir, pattern, _ := strings.Cut(line, " ")
		list = append(list, pattern)
		if err := goIn(ctx, dir, workspace, "mod", "tidy", "-diff"); err != nil {
			return b, err
		}
	}
	if err := goIn(ctx, root, workspace, list...); err != nil {
		return b, err
	}
	return b, nil
}

// goIn runs go with args in dir; its error carries what go printed.
func goIn(ctx context.Context, dir string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Env = dir, env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s in %s: %w\n%s", strings.Join(args, " "), dir, err, out)
	}
	return nil
}
