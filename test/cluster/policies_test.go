package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/micro/kubernetes/test/cluster/kube"
)

// The namespace of the Prometheus stand-in, labelled as the network-policies
// component asks of the one Prometheus runs in.
const (
	monitoringNamespace = "monitoring"
	elsewhereNamespace  = "elsewhere"
)

// netcheckPrefix starts the name of every netcheck pod.
const netcheckPrefix = "netcheck-"

// route is one connection a matrix tries, from a netcheck pod, and whether
// the policies must let it through.
type route struct {
	from, to string // names, for the report
	check    func(ctx context.Context) (open bool, err error)
	allowed  bool
}

// TestNetworkPolicies deploys the network-policies profile (alone, and with
// loadgen and api) and checks a matrix of paths with real traffic from pods: without
// an enforcer, every denied path is open (so the check can fail); with
// kube-router's, every allowed path is open and every denied one refused,
// and the application still answers. Not in parallel: the enforcer starts
// before the other tests' namespaces, which then run under it.
func TestNetworkPolicies(t *testing.T) {
	cases := map[string][]string{"policies": {policiesProfile}, "policies-loadgen-api-toolkit": {policiesProfile, "loadgen", "api", toolkitProfile}}
	for _, ns := range []string{elsewhereNamespace, monitoringNamespace} {
		createNamespace(t, ns)
		t.Cleanup(func() { deleteNamespace(ns) })
	}
	if _, err := env.cluster.Client.CoreV1().Namespaces().Patch(t.Context(), monitoringNamespace, "application/merge-patch+json",
		[]byte(`{"metadata":{"labels":{"prometheus.io/scrape":"true"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	prometheus := netcheck(t, monitoringNamespace, "prometheus", nil)
	var matrix []route
	for ns, profiles := range cases {
		deploy(t, ns, profiles)
		if _, err := eventually(t.Context(), time.Minute, func(ctx context.Context) error { return appReady(ctx, ns) }); err != nil {
			t.Fatal(err)
		}
		matrix = append(matrix, paths(t, ns, prometheus, profiles)...)
	}

	open := tryAll(t.Context(), matrix)
	leaks := 0
	for i, p := range matrix {
		if !p.allowed && open[i] {
			leaks++
		}
	}
	t.Logf("without an enforcer: %d of the %d paths the policies deny are open", leaks, countDenied(matrix))
	if leaks == 0 {
		t.Fatal("every denied path is refused without an enforcer: the matrix cannot tell enforcement apart")
	}

	if err := env.cluster.StartPolicyEnforcer(); err != nil {
		t.Fatal(err)
	}
	// Policies reach pods a moment after the enforcer starts, and not all
	// at once (a run saw one pod's egress rules land after the others'):
	// wait until the first denied path from each pod is refused, never a
	// fixed time. A policy that does not hold fails here after a minute.
	start := time.Now()
	waited := map[string]bool{}
	for _, p := range matrix {
		if p.allowed || waited[p.from] {
			continue
		}
		waited[p.from] = true
		if _, err := eventually(t.Context(), time.Minute, func(ctx context.Context) error {
			if open, err := p.check(ctx); err != nil || open {
				return fmt.Errorf("%s -> %s still open (%v)", p.from, p.to, err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("kube-router enforced the policies %s after it started", time.Since(start).Round(100*time.Millisecond))

	open = tryAll(t.Context(), matrix)
	var wrong []string
	for i, p := range matrix {
		if open[i] != p.allowed {
			wrong = append(wrong, fmt.Sprintf("%s -> %s: open %v, want %v", p.from, p.to, open[i], p.allowed))
		}
	}
	t.Logf("with kube-router: %d paths, %d allowed and open, %d denied and refused, %d wrong", len(matrix), len(matrix)-countDenied(matrix), countDenied(matrix), len(wrong))
	// The paths cross nodes where their ends stand on different ones.
	byNode := map[string]int{}
	for _, ns := range append(slices.Collect(maps.Keys(cases)), monitoringNamespace) {
		list, err := pods(t.Context(), ns, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range list {
			byNode[p.Spec.NodeName]++
		}
	}
	t.Logf("the matrix's pods, by node: %v", byNode)
	for _, w := range wrong {
		t.Error(w)
	}

	// The application still works behind its policies: the probes (from
	// the node) keep every pod Ready, and the web answers through its
	// Service, calling the greeter.
	for ns := range cases {
		if err := appReady(t.Context(), ns); err != nil {
			t.Errorf("%s under the policies: %v", ns, err)
		}
		if a, err := get(t.Context(), serviceURL("web", ns)+"/greeter?name=Policy"); err != nil || a.status != 200 {
			t.Errorf("%s: /greeter under the policies: %v %d %s", ns, err, a.status, a.body)
		}
	}
}

// paths is the matrix of one namespace: from a pod with no app labels
// (stranger), from twins carrying the web's, the load generator's and the
// gateway's labels (never Ready, so no Service routes to them), from a twin
// of the web in another namespace, and from the Prometheus stand-in.
func paths(t *testing.T, ns string, prometheus corev1.Pod, profiles []string) []route {
	t.Helper()
	app := func(name string) map[string]string {
		return map[string]string{"app.kubernetes.io/name": name, partOfLabel: partOf}
	}
	stranger := netcheck(t, ns, "stranger", nil)
	twinWeb := netcheck(t, ns, "twin-web", app("web"))
	elsewhere := netcheck(t, elsewhereNamespace, "twin-web-of-"+ns, app("web"))
	greeter := livePods(t, ns, "greeter")[0].Status.PodIP
	web := livePods(t, ns, "web")[0].Status.PodIP
	at := func(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }
	dial := func(from corev1.Pod, fromName, to, addr string, allowed bool) route {
		return route{from: ns + "/" + fromName, to: to, allowed: allowed, check: func(ctx context.Context) (bool, error) {
			return ask(ctx, from, "/dial?to="+url.QueryEscape(addr))
		}}
	}
	resolve := func(from corev1.Pod, fromName string, allowed bool) route {
		return route{from: ns + "/" + fromName, to: "DNS", allowed: allowed, check: func(ctx context.Context) (bool, error) {
			return ask(ctx, from, "/resolve?name=greeter."+ns+".svc.cluster.local")
		}}
	}
	m := []route{
		// What the application needs.
		dial(twinWeb, "web", "greeter:grpc", at(greeter, 8080), true),
		resolve(twinWeb, "web", true),
		dial(stranger, "stranger", "web:http", at(web, 8080), true),
		dial(prometheus, "prometheus", "greeter:metrics", at(greeter, 9090), true),
		dial(prometheus, "prometheus", "web:metrics", at(web, 9090), true),
		// What it does not.
		dial(stranger, "stranger", "greeter:grpc", at(greeter, 8080), false),
		dial(stranger, "stranger", "greeter:health", at(greeter, 8081), false),
		dial(stranger, "stranger", "greeter:metrics", at(greeter, 9090), false),
		dial(stranger, "stranger", "web:metrics", at(web, 9090), false),
		dial(twinWeb, "web", "web:http", at(web, 8080), false),
		dial(twinWeb, "web", "greeter:health", at(greeter, 8081), false),
		dial(twinWeb, "web", "greeter:metrics", at(greeter, 9090), false),
		dial(twinWeb, "web", "the API server", net.JoinHostPort(kube.APIServerIP, "6443"), false),
		dial(elsewhere, elsewhereNamespace+"/web", "greeter:grpc", at(greeter, 8080), false),
		dial(prometheus, "prometheus", "greeter:grpc", at(greeter, 8080), false),
		dial(prometheus, "prometheus", "greeter:health", at(greeter, 8081), false),
	}
	// The events (unless a fork dropped them): the services reach NATS's
	// client port, nothing else reaches NATS, and NATS reaches nothing. The
	// services' twins carry the backend's component label too: NATS lets
	// the backend in.
	var nats string
	if list, err := pods(t.Context(), ns, "nats"); err != nil {
		t.Fatal(err)
	} else if len(list) > 0 {
		nats = livePods(t, ns, "nats")[0].Status.PodIP
		backend := func(name string) map[string]string {
			l := app(name)
			l["app.kubernetes.io/component"] = "backend"
			return l
		}
		twinGreeter := netcheck(t, ns, "twin-greeter", backend("greeter"))
		twinStats := netcheck(t, ns, "twin-stats", backend("stats"))
		twinNATS := netcheck(t, ns, "twin-nats", app("nats"))
		stats := livePods(t, ns, "stats")[0].Status.PodIP
		m = append(m,
			dial(twinGreeter, "greeter", "nats:client", at(nats, 4222), true),
			dial(twinStats, "stats", "nats:client", at(nats, 4222), true),
			dial(twinWeb, "web", "stats:grpc", at(stats, 8080), true),
			resolve(twinGreeter, "greeter", true),
			dial(twinGreeter, "greeter", "nats:monitor", at(nats, 8222), false),
			dial(twinGreeter, "greeter", "stats:grpc", at(stats, 8080), false),
			dial(twinGreeter, "greeter", "web:http", at(web, 8080), false),
			dial(twinStats, "stats", "greeter:grpc", at(greeter, 8080), false),
			dial(twinWeb, "web", "nats:client", at(nats, 4222), false),
			dial(stranger, "stranger", "nats:client", at(nats, 4222), false),
			dial(stranger, "stranger", "nats:monitor", at(nats, 8222), false),
			dial(stranger, "stranger", "stats:grpc", at(stats, 8080), false),
			dial(prometheus, "prometheus", "nats:client", at(nats, 4222), false),
			dial(elsewhere, elsewhereNamespace+"/web", "nats:client", at(nats, 4222), false),
			dial(twinNATS, "nats", "greeter:grpc", at(greeter, 8080), false),
			dial(twinNATS, "nats", "the API server", net.JoinHostPort(kube.APIServerIP, "6443"), false),
		)
	}
	if slices.Contains(profiles, "loadgen") {
		twinLoadgen := netcheck(t, ns, "twin-loadgen", app("loadgen"))
		m = append(m,
			dial(twinLoadgen, "loadgen", "web:http", at(web, 8080), true),
			resolve(twinLoadgen, "loadgen", true),
			dial(twinLoadgen, "loadgen", "greeter:grpc", at(greeter, 8080), false),
			dial(twinLoadgen, "loadgen", "web:metrics", at(web, 9090), false),
		)
	}
	if slices.Contains(profiles, "api") {
		twinAPI := netcheck(t, ns, "twin-api", app("api"))
		api := livePods(t, ns, "api")[0].Status.PodIP
		m = append(m,
			dial(twinAPI, "api", "greeter:grpc", at(greeter, 8080), true),
			resolve(twinAPI, "api", true),
			dial(stranger, "stranger", "api:http", at(api, 8080), true),
			dial(prometheus, "prometheus", "api:metrics", at(api, 9090), true),
			dial(twinAPI, "api", "web:http", at(web, 8080), false),
			dial(twinAPI, "api", "greeter:health", at(greeter, 8081), false),
			dial(twinAPI, "api", "greeter:metrics", at(greeter, 9090), false),
			dial(twinAPI, "api", "the API server", net.JoinHostPort(kube.APIServerIP, "6443"), false),
			dial(stranger, "stranger", "api:metrics", at(api, 9090), false),
		)
		if nats != "" {
			m = append(m, dial(twinAPI, "api", "nats:client", at(nats, 4222), false))
		}
	}
	if slices.Contains(profiles, toolkitProfile) {
		twinMicro := netcheck(t, ns, "twin-micro", app("micro"))
		micro := livePods(t, ns, "micro")[0].Status.PodIP
		m = append(m,
			dial(twinMicro, "micro", "greeter:grpc", at(greeter, 8080), true),
			resolve(twinMicro, "micro", true),
			dial(twinMicro, "micro", "web:http", at(web, 8080), false),
			dial(twinMicro, "micro", "greeter:health", at(greeter, 8081), false),
			dial(twinMicro, "micro", "greeter:metrics", at(greeter, 9090), false),
			dial(twinMicro, "micro", "the API server", net.JoinHostPort(kube.APIServerIP, "6443"), false),
			dial(stranger, "stranger", "micro:http", at(micro, 8080), false),
		)
		if nats != "" {
			m = append(m, dial(twinMicro, "micro", "nats:client", at(nats, 4222), false))
		}
	}
	return m
}

// tryAll checks every path at once, and says which opened.
func tryAll(ctx context.Context, matrix []route) []bool {
	open := make([]bool, len(matrix))
	var wg sync.WaitGroup
	for i, p := range matrix {
		wg.Go(func() {
			o, err := p.check(ctx)
			open[i] = o && err == nil
		})
	}
	wg.Wait()
	return open
}

func countDenied(matrix []route) int {
	n := 0
	for _, p := range matrix {
		if !p.allowed {
			n++
		}
	}
	return n
}

// ask asks a netcheck pod, from its own node, to try a path.
func ask(ctx context.Context, p corev1.Pod, query string) (bool, error) {
	a, err := getFromNode(ctx, p.Spec.NodeName, "http://"+net.JoinHostPort(p.Status.PodIP, "8080")+query)
	if err != nil {
		return false, err
	}
	var r struct{ Open bool }
	if err := json.Unmarshal([]byte(a.body), &r); err != nil {
		return false, fmt.Errorf("%s: %w", a.body, err)
	}
	return r.Open, nil
}

// netcheck runs a netcheck pod with these labels (a twin: never Ready, so
// that no Service routes to it) and returns it once it runs.
func netcheck(t *testing.T, ns, name string, labels map[string]string) corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: netcheckPrefix + name, Labels: labels},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{
				Name:  "netcheck",
				Image: env.cluster.Registry + "/" + kube.NetCheckImage,
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)},
				}},
				SecurityContext: &corev1.SecurityContext{
					RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
			}},
		},
	}
	pods := env.cluster.Client.CoreV1().Pods(ns)
	if _, err := pods.Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var running corev1.Pod
	if _, err := eventually(t.Context(), time.Minute, func(ctx context.Context) error {
		p, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return fmt.Errorf("%s is %s", p.Name, p.Status.Phase)
		}
		running = *p
		_, err = ask(ctx, running, "/dial?to="+url.QueryEscape(net.JoinHostPort(running.Status.PodIP, "8080")))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return running
}

// appReady says why not every pod of the application's Deployments in ns
// is Ready (the netcheck twins never are).
func appReady(ctx context.Context, ns string) error {
	list, err := pods(ctx, ns, "")
	if err != nil {
		return err
	}
	for _, p := range list {
		if strings.HasPrefix(p.Name, netcheckPrefix) {
			continue
		}
		for _, c := range p.Status.ContainerStatuses {
			if !c.Ready {
				return fmt.Errorf("pod %s: container %s is not ready", p.Name, c.Name)
			}
		}
	}
	return nil
}
