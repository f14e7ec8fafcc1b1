package k8s

import (
	"fmt"
	"io"
	"slices"
)

// version is the build's version, stamped by the linker:
//
//	go build -ldflags "-X github.com/micro/kubernetes/pkg/k8s.version=v1.2.3"
//
// skaffold.yaml stamps each image with its tag, the Makefile with git
// describe. A build that is not stamped says "dev".
var version = "dev"

// Version is the build's version.
func Version() string { return version }

// PrintVersion prints "name version V" to w, as urfave/cli does, and
// returns true when args (without the program name) ask for it with
// --version or -v. go-micro lists and prints --version too, but then starts
// the service anyway, so a main calls this before initialising one.
func PrintVersion(w io.Writer, name string, args []string) bool {
	if !slices.Contains(args, "--version") && !slices.Contains(args, "-v") {
		return false
	}
	fmt.Fprintf(w, "%s version %s\n", name, version)
	return true
}
