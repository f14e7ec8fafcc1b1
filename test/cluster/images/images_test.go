package images_test

import (
	"archive/tar"
	"errors"
	"io"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// sizeBudget bounds each image (uncompressed, on the test's tiny base).
// The target is 30 MB; go-micro's graph alone takes 27.8 MB, and
// the README's Images section shows where the rest goes. This guards
// against growth.
const sizeBudget = 31_000_000

// forbidden are the programs a minimal image must not have: shells and
// package managers.
var forbidden = []string{"sh", "bash", "ash", "dash", "busybox", "apt", "apt-get", "dpkg", "apk", "rpm", "yum", "dnf", "microdnf"}

// TestImages checks each image: its size, that it runs as the manifests'
// non-root user, and that it holds the one binary and nothing to run
// besides it.
func TestImages(t *testing.T) {
	for _, name := range []string{"greeter", "health", "web"} {
		t.Run(name, func(t *testing.T) {
			image := env.images[name]
			if image == "" {
				t.Fatalf("skaffold built no %s image (built: %v)", name, env.images)
			}
			out, err := env.podman.run(t.Context(), "image", "inspect", "--format", "{{.Size}} {{.Config.User}} {{.Architecture}}", image)
			if err != nil {
				t.Fatal(err)
			}
			f := strings.Fields(out)
			if len(f) != 3 {
				t.Fatalf("podman image inspect said %q", out)
			}
			size, _ := strconv.Atoi(f[0])
			t.Logf("%s: %.1f MB uncompressed (%d bytes), user %s, %s", name, float64(size)/1e6, size, f[1], f[2])
			if size > sizeBudget {
				t.Errorf("%s is %d bytes, over the budget of %d", name, size, sizeBudget)
			}
			if f[1] != nonroot {
				t.Errorf("%s runs as user %q, want %s", name, f[1], nonroot)
			}
			if f[2] != "amd64" {
				t.Errorf("%s is for %s, want amd64", name, f[2])
			}
			files := listFiles(t, image)
			var executables []string
			for _, file := range files {
				if slices.Contains(forbidden, path.Base(file.name)) {
					t.Errorf("%s holds %s", name, file.name)
				}
				if file.executable {
					executables = append(executables, file.name)
				}
			}
			if want := []string{"ko-app/" + name}; !slices.Equal(executables, want) {
				t.Errorf("%s: executables %v, want only %v", name, executables, want)
			}
			t.Logf("%s: %d files; executables %v", name, len(files), executables)
		})
	}
}

// TestVersion checks that the binary in each image says the tag skaffold
// built it with.
func TestVersion(t *testing.T) {
	for _, name := range []string{"greeter", "health", "web"} {
		out, err := env.podman.start(t.Context(), "--rm", "--network=none", env.images[name], "--version")
		if err != nil {
			t.Fatal(err)
		}
		if want := name + " version " + tag; out != want {
			t.Errorf("%s --version said %q, want %q", name, out, want)
		}
	}
}

// TestArm64 builds every image for linux/arm64 too, as skaffold.yaml asks
// of users' builds.
func TestArm64(t *testing.T) {
	images, err := env.build(t.Context(), "linux/arm64")
	if err != nil {
		t.Fatal(err)
	}
	for name, image := range images {
		arch, err := env.podman.run(t.Context(), "image", "inspect", "--format", "{{.Architecture}}", image)
		if err != nil {
			t.Fatal(err)
		}
		if arch != "arm64" {
			t.Errorf("%s for linux/arm64 is for %s", name, arch)
		}
	}
	if len(images) != len(env.images) {
		t.Errorf("built %d images for arm64, %d for amd64", len(images), len(env.images))
	}
}

type file struct {
	name       string
	executable bool
}

// listFiles lists the regular files of an image's filesystem.
func listFiles(t *testing.T, image string) []file {
	t.Helper()
	id, err := env.podman.run(t.Context(), "create", image)
	if err != nil {
		t.Fatal(err)
	}
	defer env.podman.run(t.Context(), "rm", id)
	cmd := exec.CommandContext(t.Context(), "podman", append(env.podman.global, "export", id)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var files []file
	tr := tar.NewReader(out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			files = append(files, file{name: strings.TrimPrefix(h.Name, "/"), executable: h.Mode&0o111 != 0})
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("podman export: %v", err)
	}
	return files
}
