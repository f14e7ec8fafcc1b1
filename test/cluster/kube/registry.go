package kube

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	gcrname "github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// registryPort is the image registry's, on every address of the control
// plane's namespace. The registry is named "localhost", which ko speaks plain
// HTTP to, as a local registry needs no TLS; the nodes reach it at
// APIServerIP.
const registryPort = 5000

// pauseImage is the sandbox image, in the registry.
const pauseImage = "pause:1"

// startRegistry serves an image registry (go-containerregistry's, with its
// blobs on disk) and pushes the tier's own programs to it.
func (c *Cluster) startRegistry(ctx context.Context) error {
	l, err := net.Listen("tcp", ":"+strconv.Itoa(registryPort))
	if err != nil {
		return fmt.Errorf("listen for the registry: %w", err)
	}
	if err := os.MkdirAll(c.path("registry"), 0o755); err != nil {
		return err
	}
	c.Registry = "localhost:" + strconv.Itoa(registryPort)
	c.registry = &http.Server{
		Handler: registry.New(
			registry.WithBlobHandler(registry.NewDiskBlobHandler(c.path("registry"))),
			registry.Logger(log.New(io.Discard, "", 0)),
		),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = c.registry.Serve(l) }()
	return c.pushPrograms(ctx)
}

// NetCheckImage is the image of the netcheck program, in the registry.
const NetCheckImage = "netcheck:1"

// dockerHubMirror holds what the manifests name from Docker Hub: NATS's
// official image ("nats:2.15.3" is docker.io/library/nats:2.15.3), built
// from the same source, at the same version, by tools/nats-server. The
// nodes pull docker.io from the registry (see startContainerd).
const dockerHubMirror = "library/"

// pushPrograms pushes an image of each of the tier's own programs: the
// pause program, every pod's sandbox, and netcheck; and NATS's, under the
// official image's name and tag, its entrypoint the same (/nats-server).
func (c *Cluster) pushPrograms(ctx context.Context) error {
	for _, p := range []struct{ image, name, bin, user string }{
		{pauseImage, "pause", c.Host.Bins.Pause, "65535"},
		{NetCheckImage, "netcheck", c.Host.Bins.NetCheck, "65532"},
		{dockerHubMirror + "nats:" + c.Host.Bins.NATSTag, "nats-server", c.Host.Bins.NATSServer, "0"},
	} {
		bin, err := os.ReadFile(p.bin)
		if err != nil {
			return err
		}
		if err := c.pushBinary(ctx, p.image, p.name, bin, p.user); err != nil {
			return err
		}
	}
	return nil
}

// pushBinary pushes an image that holds one static program, at /name, run
// as user, for the node's platform.
func (c *Cluster) pushBinary(ctx context.Context, image, name string, bin []byte, user string) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(bin))}); err != nil {
		return err
	}
	if _, err := tw.Write(bin); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint, cf.Config.User = []string{"/" + name}, user
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	ref, err := gcrname.ParseReference(c.Registry + "/" + image)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push %s: %w", image, err)
	}
	return nil
}
