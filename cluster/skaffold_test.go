package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// skaffold runs the pinned skaffold in the repository, against the control
// plane, with kubectl and kustomize of the pinned versions on its PATH.
type skaffold struct {
	bin, root string
	env       []string
}

func newSkaffold(root, dir, kubeconfig string, bins map[string]string) (*skaffold, error) {
	// A global config of its own: no metrics, no survey, no update check,
	// and the user's ~/.skaffold is left alone.
	config := filepath.Join(dir, "skaffold-global.yaml")
	err := os.WriteFile(config, []byte("global:\n  collect-metrics: false\n  update-check: false\n  survey:\n    disable-prompt: true\n"), 0o600)
	if err != nil {
		return nil, fmt.Errorf("write skaffold's global config: %w", err)
	}
	path := filepath.Dir(bins["kubectl"]) + string(os.PathListSeparator) + filepath.Dir(bins["kustomize"]) +
		string(os.PathListSeparator) + os.Getenv("PATH")
	return &skaffold{
		bin: bins["skaffold"], root: root,
		// SKAFFOLD_CONFIG is --config, for the commands that take it.
		env: append(os.Environ(), "PATH="+path, "KUBECONFIG="+kubeconfig, "SKAFFOLD_CONFIG="+config, "SKAFFOLD_UPDATE_CHECK=false"),
	}, nil
}

// run runs a skaffold command and returns its standard output; the error
// carries its standard error.
func (s *skaffold) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Dir, cmd.Env = s.root, s.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("skaffold %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}

// render is what skaffold would apply with these profiles on. It goes to a
// file: skaffold also prints notes on its standard output.
func (s *skaffold) render(ctx context.Context, dir string, profiles []string) ([]byte, error) {
	out := filepath.Join(dir, "manifests.yaml")
	args := []string{"render", "--offline=true", "--digest-source=none", "--output=" + out}
	if len(profiles) > 0 {
		args = append(args, "--profile="+strings.Join(profiles, ","))
	}
	if _, err := s.run(ctx, args...); err != nil {
		return nil, err
	}
	return os.ReadFile(out)
}

// skaffoldFile is what the tests read of skaffold.yaml: the profiles and
// the images each builds.
type skaffoldFile struct {
	// images built whatever the profiles, and by each profile.
	images   []string
	profiles map[string][]string
}

func readSkaffoldFile(root string) (skaffoldFile, error) {
	b, err := os.ReadFile(filepath.Join(root, "skaffold.yaml"))
	if err != nil {
		return skaffoldFile{}, err
	}
	type artifacts struct {
		Build struct{ Artifacts []struct{ Image string } }
	}
	f := skaffoldFile{profiles: map[string][]string{}}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var c struct {
			artifacts `json:",inline"`
			Profiles  []struct {
				Name      string
				artifacts `json:",inline"`
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
			return f, fmt.Errorf("read skaffold.yaml: %w", err)
		}
		for _, a := range c.Build.Artifacts {
			f.images = append(f.images, a.Image)
		}
		for _, p := range c.Profiles {
			for _, a := range p.Build.Artifacts {
				f.profiles[p.Name] = append(f.profiles[p.Name], a.Image)
			}
			if _, ok := f.profiles[p.Name]; !ok {
				f.profiles[p.Name] = nil
			}
		}
	}
	if len(f.images) == 0 || len(f.profiles) == 0 {
		return f, fmt.Errorf("skaffold.yaml: found images %v and profiles %v", f.images, f.profiles)
	}
	return f, nil
}

// profileNames returns the profiles, sorted.
func (f skaffoldFile) profileNames() []string {
	var names []string
	for n := range f.profiles {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// TestSkaffold runs skaffold itself: diagnose for every profile, then a
// deploy of every profile at once, with tags named (kwok pulls nothing),
// waiting for the rollout with skaffold's own status check.
func TestSkaffold(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	f, err := readSkaffoldFile(env.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range append([]string{""}, f.profileNames()...) {
		args := []string{"diagnose"}
		if p != "" {
			args = append(args, "--profile="+p)
		}
		if _, err := env.skaffold.run(ctx, args...); err != nil {
			t.Errorf("profile %q: %v", p, err)
		}
	}

	const ns = "skaffold-deploy"
	createNamespace(t, ns)
	images := f.images
	for _, p := range f.profileNames() {
		images = append(images, f.profiles[p]...)
	}
	args := []string{"deploy", "--profile=" + strings.Join(f.profileNames(), ","), "--namespace=" + ns,
		"--status-check=true", "--detect-minikube=false", "--load-images=false"}
	for _, img := range images {
		args = append(args, "--images="+img+"="+img+":cluster-test")
	}
	if out, err := env.skaffold.run(ctx, args...); err != nil {
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
