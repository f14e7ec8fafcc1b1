package tool

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKubernetesLDFlagsFollowTheVersion(t *testing.T) {
	want := "-X k8s.io/component-base/version.gitVersion=v1.38.0 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=38"
	if got := Kubernetes.LDFlags("v1.38.0"); got != want {
		t.Errorf("LDFlags(v1.38.0) = %q, want %q", got, want)
	}
}

func TestBinaryName(t *testing.T) {
	for pkg, want := range map[string]string{
		"sigs.k8s.io/kustomize/kustomize/v5":                              "kustomize",
		"k8s.io/kubernetes/cmd/kubelet":                                   "kubelet",
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2": "containerd-shim-runc-v2",
		"example.com/tools/v":                                             "v",
	} {
		if got := binaryName(pkg); got != want {
			t.Errorf("binaryName(%s) = %s, want %s", pkg, got, want)
		}
	}
}

// A binary built with other flags, or from a changed pinning module, must
// not be taken from the cache for this one.
func TestRecipeKeysHowItIsBuilt(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "tools", "x")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("package main")
	tool := Tool{ModuleDir: "tools/x"}
	key := func(tl Tool) string {
		k, err := tl.recipe(root, []string{"build", "./x"})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	base := key(tool)
	if again := key(tool); again != base {
		t.Fatalf("the same recipe keyed %s, then %s", base, again)
	}
	static := tool
	static.Env = []string{"CGO_ENABLED=0"}
	if key(static) == base {
		t.Error("CGO_ENABLED=0 did not change the key")
	}
	write("package main // with another plugin")
	if key(tool) == base {
		t.Error("a changed main.go in the pinning module did not change the key")
	}
}
