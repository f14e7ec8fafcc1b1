// Package images holds the image tests (make test-images): the greeter, web
// and health images are built by skaffold's ko builder from the
// repository's skaffold.yaml, then run with podman the way the manifests
// run them, and checked end to end. No registry is reached: the only change
// to skaffold.yaml is its base image, swapped for one made locally.
package images
