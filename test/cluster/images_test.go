package cluster_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/micro/kubernetes/test/cluster/skaffold"
)

// sizeBudget bounds each image (uncompressed, on the test's tiny base).
// go-micro's graph alone takes 27.8 MB (docs/testing.md says where the rest
// goes), and the NATS client of the events 0.56 MB more in a service that
// publishes or consumes (measured on the greeter's stripped binary); this
// guards against growth.
const sizeBudget = 31_500_000

// budgets are the images with a budget of their own: the micro toolkit
// links go-micro's CLI, 0.7 MB over its client (docs/testing.md).
var budgets = map[string]int64{"micro": 30_500_000}

// forbidden are the programs a minimal image must not have: shells and
// package managers.
var forbidden = []string{"sh", "bash", "ash", "dash", "busybox", "apt", "apt-get", "dpkg", "apk", "rpm", "yum", "dnf", "microdnf"}

// TestImages checks each image skaffold pushed: its size, that it runs as
// the manifests' non-root user, and that it holds the one binary and nothing
// to run besides it. Then it builds them all for linux/arm64, as
// skaffold.yaml asks of users' builds. Not in parallel: the arm64 build
// takes both cores for minutes, and would skew what the other tests time.
func TestImages(t *testing.T) {
	images := env.file.Images
	for _, p := range env.file.ProfileNames() {
		images = append(images, env.file.Profiles[p]...)
	}
	for _, image := range images {
		t.Run(image, func(t *testing.T) {
			img := pull(t, image, tag)
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.Config.User != skaffold.Nonroot || cf.Architecture != "amd64" {
				t.Errorf("%s runs as %q on %s, want %s on amd64", image, cf.Config.User, cf.Architecture, skaffold.Nonroot)
			}
			size, files := contents(t, img)
			t.Logf("%s: %.1f MB uncompressed (%d bytes), %d files", image, float64(size)/1e6, size, len(files))
			budget := int64(sizeBudget)
			if b, ok := budgets[image]; ok {
				budget = b
			}
			if size > budget {
				t.Errorf("%s is %d bytes, over the budget of %d", image, size, budget)
			}
			var executables []string
			for file, mode := range files {
				if slices.Contains(forbidden, path.Base(file)) {
					t.Errorf("%s holds %s", image, file)
				}
				if mode&0o111 != 0 {
					executables = append(executables, file)
				}
			}
			if want := []string{"ko-app/" + image}; !slices.Equal(executables, want) {
				t.Errorf("%s: executables %v, want only %v", image, executables, want)
			}
		})
	}

	t.Run("arm64", func(t *testing.T) {
		const armTag = tag + "-arm64"
		flags := env.buildFlags("linux/arm64", env.file.ProfileNames())
		for i, f := range flags {
			if strings.HasPrefix(f, "--tag=") {
				flags[i] = "--tag=" + armTag
			}
		}
		if _, err := env.skaffold.Run(t.Context(), bytes.NewReader(env.config), append([]string{"build"}, flags...)...); err != nil {
			t.Fatal(err)
		}
		for _, image := range images {
			cf, err := pull(t, image, armTag).ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.Architecture != "arm64" {
				t.Errorf("%s for linux/arm64 is for %s", image, cf.Architecture)
			}
		}
	})
}

// pull reads an image skaffold pushed to the cluster's registry.
func pull(t *testing.T, image, tag string) v1.Image {
	t.Helper()
	ref, err := name.ParseReference(env.cluster.Registry + "/" + image + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return img
}

// contents are an image's uncompressed size and its regular files, by
// path, with their modes.
func contents(t *testing.T, img v1.Image) (int64, map[string]int64) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	files := map[string]int64{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			size += h.Size
			if h.Typeflag == tar.TypeReg {
				files[strings.TrimPrefix(h.Name, "/")] = h.Mode
			}
		}
		rc.Close()
	}
	return size, files
}
