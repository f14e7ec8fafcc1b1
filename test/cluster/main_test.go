// The cluster tier (make test-cluster): the repository's skaffold.yaml builds
// the images and deploys them, with every profile, to a real cluster of one
// node (package kube), the way `skaffold run` does on a user's cluster; then
// the application is checked from the node and from its pods: probes,
// Services, DNS, the health sidecar restarting a hung greeter, rolling
// updates and configuration changes under load.
package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/micro/kubernetes/test/cluster/kube"
	"github.com/micro/kubernetes/test/cluster/skaffold"
)

// tag is the tag skaffold gives the images; ko stamps it into the binaries
// (skaffold.yaml's ldflags), so --version and the first log line say it.
const tag = "v0.0.0-clustertest"

// env is the one cluster the tests share, set up by TestMain.
var env *environment

type environment struct {
	root    string
	cluster *kube.Cluster
	// skaffold runs the pinned skaffold against the cluster; config is
	// skaffold.yaml with the test's base image (see skaffold.WithBase).
	skaffold *skaffold.Runner
	config   []byte
	file     skaffold.File
}

func TestMain(m *testing.M) {
	root, err := filepath.Abs("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(kube.Main(root, func(ctx context.Context, c *kube.Cluster) int {
		if os.Getenv(holdEnv) != "" {
			// For TestInterrupt: say the cluster runs, then wait to be stopped.
			fmt.Println("ready")
			<-ctx.Done()
			return 0
		}
		e, err := setup(ctx, root, c)
		if err != nil {
			fmt.Fprintf(os.Stderr, "setting up the tests: %v\n%s", err, c.Logs())
			return 1
		}
		env = e
		return m.Run()
	}))
}

// setup pushes the base image and builds every image once, as users'
// skaffold would, so that each deploy after finds them in the registry.
func setup(ctx context.Context, root string, c *kube.Cluster) (*environment, error) {
	e := &environment{root: root, cluster: c}
	base, err := skaffold.Base()
	if err != nil {
		return nil, err
	}
	ref, err := name.ParseReference(c.Registry + "/distroless/static:nonroot")
	if err != nil {
		return nil, err
	}
	if err := remote.WriteIndex(ref, base, remote.WithContext(ctx)); err != nil {
		return nil, fmt.Errorf("push the base image: %w", err)
	}
	if e.config, err = skaffold.WithBase(root, ref.String()); err != nil {
		return nil, err
	}
	if e.file, err = skaffold.ReadFile(root); err != nil {
		return nil, err
	}
	e.skaffold, err = skaffold.New(c.Host.Bins.Skaffold, root, c.Host.Dir,
		[]string{filepath.Dir(c.Host.Bins.Kubectl), filepath.Dir(c.Host.Bins.Kustomize)},
		"KUBECONFIG="+c.Kubeconfig,
		// Every module is in the cache (kube.Build): fail at once rather
		// than wait on a network that is not there.
		"GOPROXY=off", "GOFLAGS=-mod=readonly")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	out, err := e.skaffold.Run(ctx, bytes.NewReader(e.config), append([]string{"build"}, e.buildFlags("linux/amd64", e.file.ProfileNames())...)...)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "skaffold built and pushed every image for linux/amd64 in %s\n%s", time.Since(start).Round(time.Second), out)
	return e, nil
}

// buildFlags are what every build of the tests gives skaffold: the config on
// standard input, the cluster's registry, one platform, the tag, profiles.
func (e *environment) buildFlags(platform string, profiles []string) []string {
	flags := []string{"--filename=-", "--default-repo=" + e.cluster.Registry, "--platform=" + platform, "--tag=" + tag,
		"--detect-minikube=false"}
	if len(profiles) > 0 {
		flags = append(flags, "--profile="+strings.Join(profiles, ","))
	}
	return flags
}
