// The cluster tier of the tests (make test-cluster): what skaffold would
// apply to your cluster is applied to a real control plane on loopback, and
// must become Available and wired. Pods are simulated by kwok: no container
// runs, so this proves the manifests, not the images (make test-images does).
package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/micro/kubernetes/test/cluster/controlplane"
	"github.com/micro/kubernetes/test/cluster/skaffold"
	"github.com/micro/kubernetes/test/cluster/testrun"
	"github.com/micro/kubernetes/tools/tool"
)

// env is the one control plane the tests share, set up by TestMain.
var env *environment

type environment struct {
	root string
	dir  string // the control plane's files
	cp   *controlplane.ControlPlane
	// skaffold runs the pinned skaffold against the control plane.
	skaffold *skaffold.Runner
}

func TestMain(m *testing.M) {
	os.Exit(testrun.Main("the control plane", func(ctx context.Context) (func(), error) {
		e, cleanup, err := setup(ctx)
		env = e
		return cleanup, err
	}, func() int {
		if os.Getenv(holdEnv) != "" {
			// For TestInterrupt: report what runs, then wait to be stopped.
			pids := fmt.Sprint(env.cp.Pids())
			fmt.Printf("pids %s dir %s\n", strings.ReplaceAll(strings.Trim(pids, "[]"), " ", ","), env.dir)
			select {}
		}
		return m.Run()
	}))
}

// setup builds (or finds in the cache) every tool and starts the control
// plane. cleanup stops it and removes its files.
func setup(ctx context.Context) (_ *environment, cleanup func(), err error) {
	cleanup = func() {}
	root, err := filepath.Abs("../..")
	if err != nil {
		return nil, cleanup, err
	}
	cache, err := tool.CacheDir()
	if err != nil {
		return nil, cleanup, err
	}
	bins := map[string]string{}
	for _, t := range []tool.Tool{tool.APIServer, tool.ControllerManager, tool.Scheduler, tool.Kwok, tool.Kubectl, tool.Skaffold, tool.Kustomize} {
		if bins[t.Name], err = t.Build(ctx, root, cache, os.Stderr); err != nil {
			return nil, cleanup, err
		}
	}
	stages, err := kwokStages(ctx, root)
	if err != nil {
		return nil, cleanup, err
	}
	dir, err := os.MkdirTemp("", "micro-cluster-")
	if err != nil {
		return nil, cleanup, fmt.Errorf("make the control plane's directory: %w", err)
	}
	var cp *controlplane.ControlPlane
	cleanup = func() {
		if cp != nil {
			if err := cp.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "stop the control plane:", err)
			}
		}
		os.RemoveAll(dir)
	}
	cp, err = controlplane.Start(ctx, controlplane.Binaries{
		APIServer: bins["kube-apiserver"], ControllerManager: bins["kube-controller-manager"],
		Scheduler: bins["kube-scheduler"], Kwok: bins["kwok"], KwokStages: stages,
	}, dir)
	if err != nil {
		return nil, cleanup, fmt.Errorf("start the control plane: %w", err)
	}
	sk, err := skaffold.New(bins["skaffold"], root, dir,
		[]string{filepath.Dir(bins["kubectl"]), filepath.Dir(bins["kustomize"])}, "KUBECONFIG="+cp.Kubeconfig)
	if err != nil {
		return nil, cleanup, err
	}
	return &environment{root: root, dir: dir, cp: cp, skaffold: sk}, cleanup, nil
}

// kwokStages are the stage manifests kwok ships that make a node Ready with
// a lease heartbeat and make pods Running and Ready at once.
func kwokStages(ctx context.Context, root string) ([]string, error) {
	src, err := tool.Kwok.ModuleSource(ctx, root)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, stage := range []string{"node/fast", "node/heartbeat-with-lease", "pod/fast"} {
		found, err := filepath.Glob(filepath.Join(src, "kustomize/stage", stage, "*.yaml"))
		if err != nil {
			return nil, err
		}
		for _, f := range found {
			if filepath.Base(f) != "kustomization.yaml" {
				files = append(files, f)
			}
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no kwok stages found in %s", src)
	}
	return files, nil
}
