package images_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// TestRunAsTheManifestsDo runs the greeter pod (greeter and health
// sidecar) and the web pod from the images, each container with the user,
// read-only root filesystem, capabilities, arguments, environment, config
// volume and memory limit of the rendered manifests, and checks the
// application end to end through the web container, then that the sidecar
// reports the greeter's stop.
//
// One difference, because the containers share the host's network (test
// traffic stays on loopback) where in the cluster each pod has its own:
// each listens on a free loopback port, set through the binaries'
// address variables, and the web finds the greeter through the static
// selector's address list instead of DNS.
func TestRunAsTheManifestsDo(t *testing.T) {
	ctx := t.Context()
	manifests, err := env.skaffold.Render(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	deployments, configMaps := decode(t, manifests)

	port := map[string]int{}
	for _, p := range []string{"greeter", "greeter-metrics", "health", "web", "web-metrics"} {
		port[p] = freePort(t)
	}
	at := func(p string) string { return "127.0.0.1:" + strconv.Itoa(port[p]) }
	// The address variables of each binary (see their --help).
	moved := map[string][]string{
		"greeter": {"MICRO_SERVER_ADDRESS=" + at("greeter"), "MICRO_METRICS_ADDRESS=" + at("greeter-metrics")},
		"health":  {"MICRO_HEALTH_ADDRESS=" + at("health"), "MICRO_SERVER_ADDRESS=" + at("greeter")},
		"web": {"MICRO_SERVER_ADDRESS=" + at("web"), "MICRO_METRICS_ADDRESS=" + at("web-metrics"),
			"STATIC_SELECTOR_ADDRESSES=greeter=" + at("greeter")},
	}

	for _, name := range []string{"greeter", "web"} {
		d, ok := deployments[name]
		if !ok {
			t.Fatalf("the manifests have no Deployment %s", name)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			args, err := runArgs(d.Spec.Template.Spec, c, configMaps, t.TempDir())
			if err != nil {
				t.Fatalf("%s/%s: %v", name, c.Name, err)
			}
			image := env.images[c.Image]
			if image == "" {
				t.Fatalf("%s/%s: no image built for %q", name, c.Name, c.Image)
			}
			for _, e := range moved[c.Name] {
				args = append(args, "--env="+e)
			}
			args = append(append(args, "--detach", "--name="+c.Name, image), c.Args...)
			if _, err := env.podman.start(ctx, args...); err != nil {
				t.Fatalf("%s/%s: %v", name, c.Name, err)
			}
			t.Cleanup(func() { env.podman.run(context.Background(), "rm", "--force", "--time=1", c.Name) })
		}
	}

	web, sidecar := "http://"+at("web"), "http://"+at("health")+"/health"
	waitStatus(t, web+"/health", http.StatusOK)
	waitStatus(t, sidecar, http.StatusOK)

	page := get(t, web+"/")
	if page.status != http.StatusOK || !strings.Contains(page.body, "<form") {
		t.Errorf("GET / = %d %q, want 200 and the page's form", page.status, page.body)
	}
	api := get(t, web+"/greeter?name=Image")
	var greeting struct{ Message string }
	if err := json.Unmarshal([]byte(api.body), &greeting); api.status != http.StatusOK || err != nil || !strings.Contains(greeting.Message, "Image") {
		t.Errorf("GET /greeter?name=Image = %d %q, want 200 and a greeting", api.status, api.body)
	}
	logs, err := env.podman.logs(ctx, "greeter")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs, `"version":"`+tag+`"`) {
		t.Errorf("the greeter's log does not say its version %s:\n%s", tag, logs)
	}

	// A graceful stop, as the kubelet's: SIGTERM, exit 0.
	if _, err := env.podman.run(ctx, "stop", "--time=15", "greeter"); err != nil {
		t.Fatal(err)
	}
	code, err := env.podman.run(ctx, "inspect", "--format", "{{.State.ExitCode}}", "greeter")
	if err != nil || code != "0" {
		t.Errorf("the greeter exited with %q (%v), want 0 after SIGTERM", code, err)
	}
	waitStatus(t, sidecar, http.StatusServiceUnavailable)
	t.Logf("sidecar after the greeter stopped: %s", get(t, sidecar).body)
}

// runArgs are podman run's arguments for a container of a pod spec: its
// security context (the container's over the pod's), environment, volumes
// and memory limit. Anything the test cannot reproduce is an error, not
// silently dropped.
func runArgs(pod corev1.PodSpec, c corev1.Container, configMaps map[string]map[string]string, dir string) ([]string, error) {
	args := []string{"--network=host"}
	user, group := pod.SecurityContext.RunAsUser, pod.SecurityContext.RunAsGroup
	sc := c.SecurityContext
	if sc == nil {
		return nil, errors.New("no security context")
	}
	if sc.RunAsUser != nil {
		user = sc.RunAsUser
	}
	if sc.RunAsGroup != nil {
		group = sc.RunAsGroup
	}
	if user == nil || group == nil {
		return nil, errors.New("no user and group to run as")
	}
	args = append(args, fmt.Sprintf("--user=%d:%d", *user, *group))
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		// Kubernetes adds no writable /tmp or /run: neither does this.
		args = append(args, "--read-only", "--read-only-tmpfs=false")
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		args = append(args, "--security-opt=no-new-privileges")
	}
	if sc.Capabilities != nil {
		for _, cap := range sc.Capabilities.Drop {
			args = append(args, "--cap-drop="+string(cap))
		}
		for _, cap := range sc.Capabilities.Add {
			args = append(args, "--cap-add="+string(cap))
		}
	}
	if mem, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		args = append(args, "--memory="+strconv.FormatInt(mem.Value(), 10))
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			return nil, fmt.Errorf("env %s comes from a reference the test cannot resolve", e.Name)
		}
		args = append(args, "--env="+e.Name+"="+e.Value)
	}
	for _, m := range c.VolumeMounts {
		src, err := volume(pod, m.Name, configMaps, dir)
		if err != nil {
			return nil, err
		}
		opt := ""
		if m.ReadOnly {
			opt = ":ro"
		}
		args = append(args, "--volume="+src+":"+m.MountPath+opt)
	}
	return args, nil
}

// volume writes the files of a ConfigMap volume to a directory and returns
// it, as the kubelet would mount it.
func volume(pod corev1.PodSpec, name string, configMaps map[string]map[string]string, dir string) (string, error) {
	for _, v := range pod.Volumes {
		if v.Name != name {
			continue
		}
		if v.ConfigMap == nil {
			return "", fmt.Errorf("volume %s: only ConfigMap volumes are reproduced", name)
		}
		data, ok := configMaps[v.ConfigMap.Name]
		if !ok {
			return "", fmt.Errorf("volume %s: no ConfigMap %s in the manifests", name, v.ConfigMap.Name)
		}
		src := filepath.Join(dir, name)
		if err := os.MkdirAll(src, 0o755); err != nil {
			return "", err
		}
		for file, content := range data {
			if err := os.WriteFile(filepath.Join(src, file), []byte(content), 0o644); err != nil {
				return "", err
			}
		}
		return src, nil
	}
	return "", fmt.Errorf("no volume %s in the pod", name)
}

// decode returns the Deployments and the ConfigMaps' data of the
// manifests, by name.
func decode(t *testing.T, manifests []byte) (map[string]appsv1.Deployment, map[string]map[string]string) {
	t.Helper()
	deployments, configMaps := map[string]appsv1.Deployment{}, map[string]map[string]string{}
	d := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	for {
		var raw json.RawMessage
		if err := d.Decode(&raw); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		var kind struct{ Kind string }
		if err := json.Unmarshal(raw, &kind); err != nil {
			t.Fatal(err)
		}
		switch kind.Kind {
		case "Deployment":
			var o appsv1.Deployment
			if err := json.Unmarshal(raw, &o); err != nil {
				t.Fatal(err)
			}
			deployments[o.Name] = o
		case "ConfigMap":
			var o corev1.ConfigMap
			if err := json.Unmarshal(raw, &o); err != nil {
				t.Fatal(err)
			}
			configMaps[o.Name] = o.Data
		}
	}
	return deployments, configMaps
}

type response struct {
	status int
	body   string
}

func get(t *testing.T, url string) response {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return response{resp.StatusCode, string(b)}
}

// waitStatus waits up to 30 s for url to answer with status.
func waitStatus(t *testing.T, url string, status int) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := client.Get(url)
		if err != nil {
			last = err.Error()
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == status {
			return
		}
		last = resp.Status
	}
	t.Fatalf("GET %s: want %d within 30s, last %s", url, status, last)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
