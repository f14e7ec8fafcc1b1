package tool

import "testing"

func TestKubernetesLDFlagsFollowTheVersion(t *testing.T) {
	want := "-X k8s.io/component-base/version.gitVersion=v1.38.0 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=38"
	if got := APIServer.LDFlags("v1.38.0"); got != want {
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
