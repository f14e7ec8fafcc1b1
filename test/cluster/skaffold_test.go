package cluster_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/micro/kubernetes/test/cluster/skaffold"
)

// TestSkaffold runs skaffold itself: diagnose for every profile, then a
// deploy of every profile at once, with tags named (kwok pulls nothing),
// waiting for the rollout with skaffold's own status check.
func TestSkaffold(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	f, err := skaffold.ReadFile(env.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append([]string{""}, f.ProfileNames()...) {
		args := []string{"diagnose"}
		if p != "" {
			args = append(args, "--profile="+p)
		}
		if _, err := env.skaffold.Run(ctx, nil, args...); err != nil {
			t.Errorf("profile %q: %v", p, err)
		}
	}

	const ns = "skaffold-deploy"
	createNamespace(t, ns)
	images := f.Images
	for _, p := range f.ProfileNames() {
		images = append(images, f.Profiles[p]...)
	}
	args := []string{"deploy", "--profile=" + strings.Join(f.ProfileNames(), ","), "--namespace=" + ns,
		"--status-check=true", "--detect-minikube=false", "--load-images=false"}
	for _, img := range images {
		args = append(args, "--images="+img+"="+img+":cluster-test")
	}
	if out, err := env.skaffold.Run(ctx, nil, args...); err != nil {
		t.Fatalf("%v\ncontrol plane:\n%s", err, env.cp.Logs())
	} else {
		t.Logf("skaffold deploy:\n%s", out)
	}
	deployments, err := env.cp.Client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(deployments.Items) == 0 {
		t.Fatal("skaffold deploy created no Deployment")
	}
	for _, d := range deployments.Items {
		for _, c := range d.Spec.Template.Spec.Containers {
			if !strings.HasSuffix(c.Image, ":cluster-test") {
				t.Errorf("deployment %s container %s: image %q, want the tag given to skaffold", d.Name, c.Name, c.Image)
			}
		}
	}
}
