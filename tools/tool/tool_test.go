package tool

import "testing"

func TestKubernetesLDFlagsFollowTheVersion(t *testing.T) {
	want := "-X k8s.io/component-base/version.gitVersion=v1.38.0 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=38"
	if got := APIServer.LDFlags("v1.38.0"); got != want {
		t.Errorf("LDFlags(v1.38.0) = %q, want %q", got, want)
	}
}
