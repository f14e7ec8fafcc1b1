package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The Makefile's skaffold targets, with no skaffold on PATH and a pin that
// cannot be built, stop with the tool build's own error and a non-zero
// status: never with "command not found" after the failure was dropped.
func TestMakefileStopsOnABrokenToolPin(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"Makefile", "tools/go.mod", "tools/main.go", "tools/tool/tool.go", "tools/kustomize/go.mod"} {
		copyFile(t, filepath.Join("..", f), filepath.Join(dir, f))
	}
	// A version that was never released: the build cannot fetch it.
	const pin = "github.com/GoogleContainerTools/skaffold/v2 v2.99.0"
	writeFile(t, filepath.Join(dir, "tools/skaffold/go.mod"),
		"module github.com/micro/kubernetes/tools/skaffold\n\ngo 1.26.0\n\nrequire "+pin+"\n")

	// PATH holds go alone (and dirname, which the recipe uses once both
	// tools are found): no skaffold or kustomize of the machine's is found.
	path := t.TempDir()
	for _, name := range []string{"go", "dirname"} {
		bin, err := exec.LookPath(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(bin, filepath.Join(path, name)); err != nil {
			t.Fatal(err)
		}
	}
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"render", "dev", "deploy", "undeploy"} {
		cmd := exec.Command(makeBin, "--no-print-directory", target)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+path, "GOPROXY=off", "GOWORK=off", "CGO_ENABLED=0",
			"MICRO_TOOLS_CACHE="+filepath.Join(dir, "cache"))
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("make %s succeeded with a broken skaffold pin:\n%s", target, out)
			continue
		}
		if strings.Contains(string(out), "command not found") || !strings.Contains(string(out), "tools: ") ||
			!strings.Contains(string(out), "github.com/GoogleContainerTools/skaffold/v2") {
			t.Errorf("make %s: %v, want the tool build's error naming skaffold's module:\n%s", target, err, out)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(b))
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
