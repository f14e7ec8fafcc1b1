package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/micro/kubernetes/test/cluster/kube"
)

// The helpers the tests share: namespaces, skaffold deploys, pods, and
// requests from the node to Services and pods.

// partOf is the label and value kustomize puts on every object and pod of
// the application (deploy/base/kustomization.yaml).
const partOfLabel, partOf = "app.kubernetes.io/part-of", "micro-on-kubernetes"

// deleteNamespace deletes a namespace and everything in it, without
// waiting: its pods' grace periods run on while other tests go on.
func deleteNamespace(name string) {
	_ = env.cluster.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
}

// podSecurityLabel makes the API server admit only pods that meet Pod
// Security "restricted", the level deploy/README.md asks a user's namespace
// to enforce: every namespace of the tier has it.
const podSecurityLabel, podSecurityLevel = "pod-security.kubernetes.io/enforce", "restricted"

// createNamespace makes a namespace that enforces podSecurityLevel.
func createNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{podSecurityLabel: podSecurityLevel}}}
	if _, err := env.cluster.Client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// deploy runs `skaffold run` with these profiles into a new namespace ns, as
// `make deploy PROFILES=...` does, and waits with skaffold's own status
// check. The images were built by TestMain: skaffold finds them in the
// registry. The namespace goes when the test ends: the node has two cores
// to schedule every test's pods on.
func deploy(t *testing.T, ns string, profiles []string) string {
	t.Helper()
	createNamespace(t, ns)
	t.Cleanup(func() { deleteNamespace(ns) })
	args := append([]string{"run"}, env.buildFlags("linux/amd64", profiles)...)
	args = append(args, "--namespace="+ns, "--status-check=true")
	out, err := env.skaffold.Run(t.Context(), bytes.NewReader(env.config), args...)
	if err != nil {
		t.Fatalf("%v\ncluster:\n%s", err, env.cluster.Logs())
	}
	return string(out)
}

// pods lists the pods of an app (app.kubernetes.io/name) in ns; all of ns
// when app is empty.
func pods(ctx context.Context, ns, app string) ([]corev1.Pod, error) {
	opts := metav1.ListOptions{}
	if app != "" {
		opts.LabelSelector = "app.kubernetes.io/name=" + app
	}
	list, err := env.cluster.Client.CoreV1().Pods(ns).List(ctx, opts)
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// livePods are the pods of an app's Deployment that are not being deleted,
// by name: not the network policy test's twins, which carry its labels.
func livePods(t *testing.T, ns, app string) []corev1.Pod {
	t.Helper()
	all, err := pods(t.Context(), ns, app)
	if err != nil {
		t.Fatal(err)
	}
	var live []corev1.Pod
	for _, p := range all {
		if p.DeletionTimestamp == nil && !strings.HasPrefix(p.Name, netcheckPrefix) {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		t.Fatalf("no pod of %s in %s", app, ns)
	}
	sort.Slice(live, func(i, j int) bool { return live[i].Name < live[j].Name })
	return live
}

// getPod is the current state of one pod.
func getPod(t *testing.T, ns, name string) corev1.Pod {
	t.Helper()
	p, err := env.cluster.Client.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return *p
}

// metricsURL is where Prometheus would scrape a pod, by its annotations.
func metricsURL(p corev1.Pod) string {
	return "http://" + net.JoinHostPort(p.Status.PodIP, p.Annotations["prometheus.io/port"]) + p.Annotations["prometheus.io/path"]
}

// served is how many Greeter.Hello calls a greeter pod counted.
func served(ctx context.Context, p corev1.Pod) (float64, error) {
	return metric(ctx, p, "rpc_server_requests_total", `method="Greeter.Hello"`)
}

// allReady says why not every pod of ns is Running with every container
// ready, or nil.
func allReady(ctx context.Context, ns string) error {
	list, err := pods(ctx, ns, "")
	if err != nil {
		return err
	}
	if len(list) == 0 {
		return errors.New("no pods")
	}
	for _, p := range list {
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("pod %s is %s", p.Name, p.Status.Phase)
		}
		for _, c := range p.Status.ContainerStatuses {
			if !c.Ready {
				return fmt.Errorf("pod %s: container %s is not ready", p.Name, c.Name)
			}
		}
	}
	return nil
}

// restarts are the restart counts of every container of ns, by pod/container.
func restarts(t *testing.T, ns string) map[string]int32 {
	t.Helper()
	list, err := pods(t.Context(), ns, "")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int32{}
	for _, p := range list {
		for _, c := range p.Status.ContainerStatuses {
			counts[p.Name+"/"+c.Name] = c.RestartCount
		}
	}
	return counts
}

// warning is a Warning event about a pod.
type warning struct {
	reason, text string
}

// probeFailed says the kubelet ran a probe and it failed ("Liveness probe
// failed: ..."), rather than errored ("... probe errored and resulted in
// unknown state"), which never counts toward its failureThreshold.
func (w warning) probeFailed() bool {
	return w.reason == "Unhealthy" && strings.Contains(w.text, " probe failed: ")
}

// warnings are the Warning events about pods of ns seen since t.
func warnings(ctx context.Context, ns string, since time.Time) ([]warning, error) {
	list, err := env.cluster.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "type=Warning"})
	if err != nil {
		return nil, err
	}
	var found []warning
	for _, e := range list.Items {
		last := e.LastTimestamp.Time
		if e.Series != nil {
			last = e.Series.LastObservedTime.Time
		}
		if last.IsZero() {
			last = e.EventTime.Time
		}
		if e.InvolvedObject.Kind == "Pod" && !last.Before(since) {
			found = append(found, warning{e.Reason, fmt.Sprintf("%s %s: %s %s (x%d)", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message, e.Count)})
		}
	}
	return found, nil
}

// leftReady are the pods of ns that are not Ready, or whose Ready
// condition changed since t: a readiness probe that failed its
// failureThreshold in a row took them out of their Services meanwhile.
func leftReady(ctx context.Context, ns string, since time.Time) ([]string, error) {
	list, err := pods(ctx, ns, "")
	if err != nil {
		return nil, err
	}
	var left []string
	for _, p := range list {
		i := slices.IndexFunc(p.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.PodReady })
		if i < 0 || p.Status.Conditions[i].Status != corev1.ConditionTrue || p.Status.Conditions[i].LastTransitionTime.After(since) {
			left = append(left, p.Name)
		}
	}
	return left, nil
}

// client sends requests from the node, finding names through the cluster's
// DNS as pods do: "http://web.NS.svc.cluster.local" is the web Service.
var client = &http.Client{
	Timeout: 10 * time.Second,
	Transport: &http.Transport{
		DialContext:         (&net.Dialer{Resolver: kube.Resolver(), Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
	},
}

// getFromNode sends a GET from the network namespace of the node named
// node, where a NetworkPolicy enforcer lets it reach that node's pods.
func getFromNode(ctx context.Context, node, url string) (answer, error) {
	dial, err := env.cluster.DialerOn(node)
	if err != nil {
		return answer{}, err
	}
	c := &http.Client{Timeout: client.Timeout, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	return doWith(ctx, c, http.MethodGet, url, "")
}

// serviceURL is the URL of a Service of ns, by its DNS name.
func serviceURL(service, ns string) string {
	return "http://" + service + "." + ns + ".svc.cluster.local"
}

type answer struct {
	status int
	body   string
	header http.Header
}

func get(ctx context.Context, url string) (answer, error) {
	return do(ctx, http.MethodGet, url, "")
}

func post(ctx context.Context, url, body string) (answer, error) {
	return do(ctx, http.MethodPost, url, body)
}

func do(ctx context.Context, method, url, body string) (answer, error) {
	return doWith(ctx, client, method, url, body)
}

func doWith(ctx context.Context, c *http.Client, method, url, body string) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	rsp, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer rsp.Body.Close()
	b, err := io.ReadAll(rsp.Body)
	return answer{status: rsp.StatusCode, body: string(b), header: rsp.Header}, err
}

// eventually calls check every 250 ms until it returns nil or limit
// passes, and returns how long that took; the error says the last failure.
func eventually(ctx context.Context, limit time.Duration, check func(context.Context) error) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		err := check(ctx)
		if err == nil {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("not within %s: %w", limit, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// metric reads a counter of a pod's Prometheus text exposition: the sum of
// the series name{labels...} where labels is a substring of the label set. A
// counter with no series yet has counted nothing: 0. It asks from the pod's
// own node, which network policies let through as they let the kubelet's
// probes: only Prometheus' namespace may scrape from elsewhere.
func metric(ctx context.Context, p corev1.Pod, series, labels string) (float64, error) {
	url := metricsURL(p)
	a, err := getFromNode(ctx, p.Spec.NodeName, url)
	if err != nil {
		return 0, err
	}
	if a.status != 200 {
		return 0, fmt.Errorf("GET %s: %d", url, a.status)
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + `\{([^}]*)\} (\S+)$`)
	total := 0.0
	for _, m := range re.FindAllStringSubmatch(a.body, -1) {
		if strings.Contains(m[1], labels) {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				return 0, err
			}
			total += v
		}
	}
	return total, nil
}

// decode splits a multi-document YAML stream into objects.
func decode(manifests []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	d := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	for {
		var o unstructured.Unstructured
		if err := d.Decode(&o.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode the manifests: %w", err)
		}
		if len(o.Object) > 0 {
			objs = append(objs, &o)
		}
	}
	if len(objs) == 0 {
		return nil, errors.New("no objects in the manifests")
	}
	return objs, nil
}
