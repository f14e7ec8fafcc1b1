package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// steady is how long a deployed profile must run with no probe acting (see
// checkSteady): a probe that errors, fails or cannot run fails every
// period, which is at most 10 s here, and acts after three at most.
const steady = time.Minute

// TestProfiles deploys with `skaffold run` with no profile, each profile
// alone, and all of them, each into a namespace of its own, two at a time
// (make test-cluster's -parallel). Each must come up Running and Ready
// through its real probes, run a steady minute with no probe acting,
// answer /greeter through the web Service (which calls the greeter by its
// Service's DNS name), and serve the page; each profile adds its own
// check.
func TestProfiles(t *testing.T) {
	cases := map[string][]string{"base": nil, "all": env.file.ProfileNames()}
	for _, p := range env.file.ProfileNames() {
		cases[p] = []string{p}
	}
	for name, profiles := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ns := "profile-" + name
			out := deploy(t, ns, profiles)
			if len(profiles) == 0 {
				t.Logf("skaffold run:\n%s", out) // the README's example
			}
			if _, err := eventually(t.Context(), time.Minute, func(ctx context.Context) error { return allReady(ctx, ns) }); err != nil {
				t.Fatal(err)
			}
			ready := time.Now()
			before := restarts(t, ns)

			within := greetingWithin(profiles)
			checkGreeting(t, ns, within)
			checkVersion(t, ns)
			for _, p := range profiles {
				if check, ok := profileChecks[p]; ok {
					check(t, ns, within)
				}
			}

			time.Sleep(time.Until(ready.Add(steady)))
			checkSteady(t, ns, ready, before)
		})
	}
}

// checkSteady checks the steady minute since ready: no Warning from the
// pods but for a probe that failed without effect, no container restarted
// (before are the restart counts at ready) and no pod left Ready. A probe
// acts only after failureThreshold failures in a row (3 for liveness, 2
// for readiness here): a single failure is the kubelet's to absorb, and a
// machine running many stacks at once on two cores shows some (a probe's
// answer waiting its timeout for a CPU). A probe set wrong fails every
// period, and restarts its container or keeps its pod out of Ready; one
// that cannot run (a port name the kubelet does not find) errors, which
// never acts, and is a Warning like any other.
func checkSteady(t *testing.T, ns string, ready time.Time, before map[string]int32) {
	t.Helper()
	warned, err := warnings(t.Context(), ns, ready)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warned {
		if w.probeFailed() {
			t.Logf("during the steady minute, without effect so far: %s", w.text)
		} else {
			t.Errorf("during the steady minute: %s", w.text)
		}
	}
	if after := restarts(t, ns); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("containers restarted during the steady minute: %v, then %v", before, after)
	}
	left, err := leftReady(t.Context(), ns, ready)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("pods left Ready during the steady minute, or are not Ready: %v", left)
	}
}

// policiesProfile is the profile that adds NetworkPolicies.
const policiesProfile = "network-policies"

// greetingWithin is how long after every pod is Ready the web must answer
// through its Service. The web may have dialled the greeter before it was
// ready: the first answers can be 503 until gRPC's reconnect backoff (at
// most 1 s, see pkg/k8s) brings the connection up. Under NetworkPolicies
// the enforcer TestNetworkPolicies leaves running adds its own delay: it
// programs a new pod's rules after the pod is Ready, pod by pod, and a
// connection attempt dropped meanwhile waits for TCP to send it again (1,
// 3, 7 s after the first).
func greetingWithin(profiles []string) time.Duration {
	if slices.Contains(profiles, policiesProfile) {
		return 30 * time.Second
	}
	return 5 * time.Second
}

// checkGreeting asks the web Service for a greeting, within the given time
// of every pod being Ready, and for the page.
func checkGreeting(t *testing.T, ns string, within time.Duration) {
	t.Helper()
	took, err := eventually(t.Context(), within, func(ctx context.Context) error {
		a, err := get(ctx, serviceURL("web", ns)+"/greeter?name=Node")
		if err != nil {
			return err
		}
		var got struct{ Message string }
		if a.status != 200 || json.Unmarshal([]byte(a.body), &got) != nil || got.Message != "Hello Node" {
			return fmt.Errorf("%d %s", a.status, a.body)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("GET /greeter?name=Node through the web Service, want 200 {\"message\":\"Hello Node\"}: %v", err)
	}
	t.Logf("/greeter answered Hello Node %s after every pod was Ready", took.Round(time.Millisecond))
	page, err := get(t.Context(), serviceURL("web", ns)+"/")
	if err != nil {
		t.Fatal(err)
	}
	if page.status != 200 || !strings.HasPrefix(page.header.Get("Content-Type"), "text/html") || !strings.Contains(page.body, "<form") {
		t.Fatalf("GET / through the web Service: %d %s %.200s, want the page", page.status, page.header.Get("Content-Type"), page.body)
	}
}

// checkVersion checks that every container runs what skaffold built: ko
// stamps the image's tag into the binary, and its start-up line says it.
func checkVersion(t *testing.T, ns string) {
	t.Helper()
	list, err := pods(t.Context(), ns, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list {
		for _, c := range p.Spec.Containers {
			b, err := env.cluster.Client.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: c.Name}).DoRaw(t.Context())
			if err != nil {
				t.Fatalf("logs of %s/%s: %v", p.Name, c.Name, err)
			}
			// NATS, the official image, says its own version.
			want := `"version":"` + tag + `"`
			if !strings.HasPrefix(c.Image, env.cluster.Registry+"/") {
				want = "Version:  " + env.cluster.Host.Bins.NATSTag
			}
			if !strings.Contains(string(b), want) {
				t.Errorf("%s/%s: the log does not say %s:\n%s", p.Name, c.Name, want, b)
			}
		}
	}
}

// profileChecks are what each profile must add in the cluster; a call
// through a Service must answer within the time greetingWithin gives.
var profileChecks = map[string]func(t *testing.T, ns string, within time.Duration){
	// The mesh injects pods annotated for it: the annotation must be on the
	// application's pods themselves, where Linkerd's injector reads it (the
	// load generator stays outside the mesh, like outside traffic).
	"conduit": func(t *testing.T, ns string, _ time.Duration) {
		for _, app := range []string{"greeter", "web"} {
			for _, p := range livePods(t, ns, app) {
				if p.Annotations["linkerd.io/inject"] != "enabled" {
					t.Errorf("pod %s: annotation linkerd.io/inject = %q, want enabled", p.Name, p.Annotations["linkerd.io/inject"])
				}
			}
		}
	},
	// Every rendered NetworkPolicy was admitted. (The enforcer that
	// TestNetworkPolicies started polices them here too; its matrix is what
	// proves them.)
	policiesProfile: func(t *testing.T, ns string, _ time.Duration) {
		list, err := env.cluster.Client.NetworkingV1().NetworkPolicies(ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) == 0 {
			t.Error("the network-policies profile made no NetworkPolicy")
		}
	},
	// The API gateway calls the greeter by its Service's name for an
	// endpoint on its allow-list, and hides the greeter's own endpoints.
	"api": func(t *testing.T, ns string, within time.Duration) {
		url := serviceURL("api", ns) + "/greeter/Greeter.Hello"
		took, err := eventually(t.Context(), within, func(ctx context.Context) error {
			a, err := post(ctx, url, `{"name":"Node"}`)
			if err == nil && (a.status != 200 || a.body != "{\"message\":\"Hello Node\"}\n") {
				err = fmt.Errorf("%d %s", a.status, a.body)
			}
			return err
		})
		if err != nil {
			t.Fatalf("POST %s {\"name\":\"Node\"}, want 200 {\"message\":\"Hello Node\"}: %v", url, err)
		}
		t.Logf("the gateway answered Hello Node %s after every pod was Ready", took.Round(time.Millisecond))
		if a, err := post(t.Context(), serviceURL("api", ns)+"/greeter/Debug.Health", `{}`); err != nil || a.status != 404 {
			t.Errorf("POST /greeter/Debug.Health through the gateway: %v %v, want 404", a, err)
		}
	},
	// The load generator's requests reach the greeter: its metrics count
	// them, rising while the test itself sends nothing.
	"loadgen": func(t *testing.T, ns string, _ time.Duration) {
		// Where Prometheus would scrape, by the pods' own annotations.
		greeters := livePods(t, ns, "greeter")
		count := func(ctx context.Context) (float64, error) {
			total := 0.0
			for _, p := range greeters {
				n, err := served(ctx, p)
				if err != nil {
					return 0, err
				}
				total += n
			}
			return total, nil
		}
		first, err := count(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		took, err := eventually(t.Context(), 30*time.Second, func(ctx context.Context) error {
			n, err := count(ctx)
			if err == nil && n < first+3 {
				err = fmt.Errorf("Greeter.Hello counted %v, then %v: want 3 more from the load generator", first, n)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("the greeter counted 3 more requests of the load generator in %s", took.Round(time.Second))
	},
}
