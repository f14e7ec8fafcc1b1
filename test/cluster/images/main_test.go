package images_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/micro/kubernetes/test/cluster/skaffold"
	"github.com/micro/kubernetes/test/cluster/testrun"
	"github.com/micro/kubernetes/tools/tool"
)

// tag is the tag skaffold gives the images; ko stamps it into the binaries
// (skaffold.yaml's ldflags), so --version must print it.
const tag = "v0.0.0-imagetest"

// env is what TestMain set up for the tests.
var env *environment

type environment struct {
	root     string
	dir      string
	podman   *podman
	skaffold *skaffold.Runner
	// config is skaffold.yaml with the local base image.
	config []byte
	// images maps each artifact to the image skaffold built for linux/amd64.
	images map[string]string
}

func TestMain(m *testing.M) {
	os.Exit(testrun.Main("the image tests' containers", func(ctx context.Context) (func(), error) {
		e, cleanup, err := setup(ctx)
		env = e
		return cleanup, err
	}, m.Run))
}

// setup builds the images for linux/amd64 into a podman of its own.
// cleanup removes the containers, stops podman and removes its storage.
func setup(ctx context.Context) (_ *environment, cleanup func(), err error) {
	cleanup = func() {}
	e := &environment{}
	if e.root, err = filepath.Abs("../../.."); err != nil {
		return nil, cleanup, err
	}
	cache, err := tool.CacheDir()
	if err != nil {
		return nil, cleanup, err
	}
	bins := map[string]string{}
	for _, t := range []tool.Tool{tool.Skaffold, tool.Kustomize} {
		if bins[t.Name], err = t.Build(ctx, e.root, cache, os.Stderr); err != nil {
			return nil, cleanup, err
		}
	}
	if e.dir, err = os.MkdirTemp("", "micro-images-"); err != nil {
		return nil, cleanup, err
	}
	cleanup = func() {
		if e.podman != nil {
			if err := e.podman.stop(); err != nil {
				fmt.Fprintln(os.Stderr, "stop podman:", err)
			}
		}
		os.RemoveAll(e.dir)
	}
	if e.podman, err = startPodman(e.dir); err != nil {
		return nil, cleanup, err
	}
	kocache := filepath.Join(e.dir, "kocache")
	base, err := writeBase(kocache)
	if err != nil {
		return nil, cleanup, err
	}
	if e.config, err = withBase(e.root, base); err != nil {
		return nil, cleanup, err
	}
	e.skaffold, err = skaffold.New(bins["skaffold"], e.root, e.dir, []string{filepath.Dir(bins["kustomize"])},
		"DOCKER_HOST="+e.podman.dockerHost(), "KOCACHE="+kocache,
		// No cluster: nothing to ask for its platforms or to load into.
		"KUBECONFIG="+filepath.Join(e.dir, "no-kubeconfig"))
	if err != nil {
		return nil, cleanup, err
	}
	start := time.Now()
	if e.images, err = e.build(ctx, "linux/amd64"); err != nil {
		return nil, cleanup, err
	}
	fmt.Fprintf(os.Stderr, "skaffold built %d images for linux/amd64 in %s\n", len(e.images), time.Since(start).Round(time.Second))
	return e, cleanup, nil
}

// fromImage is the base image field of skaffold.yaml's ko artifacts.
var fromImage = regexp.MustCompile(`(?m)^(\s*fromImage:\s*)\S+`)

// withBase returns skaffold.yaml with every base image replaced by base, and
// nothing else changed. It is given to skaffold on its standard input, so
// no test-only config or profile exists for users to read.
func withBase(root, base string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(root, "skaffold.yaml"))
	if err != nil {
		return nil, err
	}
	if !fromImage.Match(b) {
		return nil, fmt.Errorf("skaffold.yaml has no fromImage to replace")
	}
	return fromImage.ReplaceAll(b, []byte("${1}"+base)), nil
}

// build builds the images with skaffold for one platform into podman's
// storage (no push), and returns the image of each artifact.
func (e *environment) build(ctx context.Context, platform string) (map[string]string, error) {
	out := filepath.Join(e.dir, "builds-"+strings.ReplaceAll(platform, "/", "-")+".json")
	_, err := e.skaffold.Run(ctx, bytes.NewReader(e.config), "build", "--filename=-",
		"--platform="+platform, "--push=false", "--tag="+tag, "--cache-artifacts=false",
		"--detect-minikube=false", "--file-output="+out)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	var builds struct {
		Builds []struct{ ImageName, Tag string }
	}
	if err := json.Unmarshal(b, &builds); err != nil {
		return nil, fmt.Errorf("read skaffold's build output: %w", err)
	}
	images := map[string]string{}
	for _, b := range builds.Builds {
		images[b.ImageName] = b.Tag
	}
	return images, nil
}
