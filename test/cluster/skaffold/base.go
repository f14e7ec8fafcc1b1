package skaffold

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Nonroot is distroless' unprivileged user, which the manifests run as.
const Nonroot = "65532"

// Base is a stand-in for the distroless static nonroot base image, which
// cannot be pulled where the tests run, for linux/amd64 and linux/arm64.
// Like distroless it has no shell and no package manager: only the nonroot
// user's passwd and group entries.
func Base() (v1.ImageIndex, error) {
	layer, err := filesLayer(map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:" + Nonroot + ":" + Nonroot + ":nonroot:/home/nonroot:/sbin/nologin\n",
		"etc/group":  "root:x:0:\nnonroot:x:" + Nonroot + ":\n",
	})
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return nil, fmt.Errorf("make the base image: %w", err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		cf.Config.User = Nonroot
		cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	return idx, nil
}

// filesLayer is an image layer holding these files (mode 0644).
func filesLayer(files map[string]string) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755}); err != nil {
		return nil, err
	}
	// In a fixed order, so the base's digest is the same every run.
	for _, name := range slices.Sorted(maps.Keys(files)) {
		content := files[name]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))}); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(tw, content); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// fromImage is the base image field of skaffold.yaml's ko artifacts.
var fromImage = regexp.MustCompile(`(?m)^(\s*fromImage:\s*)\S+`)

// WithBase returns root's skaffold.yaml with every base image replaced by
// base, and nothing else changed. The tests give it to skaffold on its
// standard input, so no test-only config or profile exists for users to
// read.
func WithBase(root, base string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(root, "skaffold.yaml"))
	if err != nil {
		return nil, err
	}
	if !fromImage.Match(b) {
		return nil, fmt.Errorf("skaffold.yaml has no fromImage to replace")
	}
	return fromImage.ReplaceAll(b, []byte("${1}"+base)), nil
}
