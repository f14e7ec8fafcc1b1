package images_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// nonroot is distroless' unprivileged user, which the manifests run as.
const nonroot = "65532"

// baseRepository names the local base image; it is never pulled: ko finds
// it by digest in its cache ($KOCACHE/img).
const baseRepository = "example.invalid/micro-test-base"

// writeBase writes a stand-in for the distroless static nonroot base into
// ko's image cache in kocache, for linux/amd64 and linux/arm64, and returns
// its reference by digest. Like distroless it has no shell and no package
// manager: only the nonroot user's passwd and group entries.
func writeBase(kocache string) (string, error) {
	layer, err := filesLayer(map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:" + nonroot + ":" + nonroot + ":nonroot:/home/nonroot:/sbin/nologin\n",
		"etc/group":  "root:x:0:\nnonroot:x:" + nonroot + ":\n",
	})
	if err != nil {
		return "", err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var images []v1.Image
	for _, arch := range []string{"amd64", "arm64"} {
		img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return "", fmt.Errorf("make the base image: %w", err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return "", err
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		cf.Config.User = nonroot
		cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return "", err
		}
		images = append(images, img)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	p, err := layout.Write(filepath.Join(kocache, "img"), empty.Index)
	if err != nil {
		return "", fmt.Errorf("write ko's image cache: %w", err)
	}
	// ko looks up the index, then each platform's image, by digest at the
	// top of its cache: both must be there, or it goes to the network.
	if err := p.AppendIndex(idx); err != nil {
		return "", fmt.Errorf("write the base image: %w", err)
	}
	for _, img := range images {
		if err := p.AppendImage(img); err != nil {
			return "", fmt.Errorf("write the base image: %w", err)
		}
	}
	d, err := idx.Digest()
	if err != nil {
		return "", err
	}
	return baseRepository + "@" + d.String(), nil
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
