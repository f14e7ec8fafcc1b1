package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/micro/kubernetes/test/cluster/kube"
)

// The bounds of a lost node, from the moment its network is cut.
const (
	// keepaliveBound: the web's calls to a greeter that stopped answering
	// fail until the connection is dropped: 2 s after its calls go
	// unacknowledged (gRPC sets TCP_USER_TIMEOUT to the keepalive timeout),
	// at most 10 + 2 s when it is idle (the keepalive, pkg/k8s); slack for
	// a busy machine.
	keepaliveBound = 12*time.Second + 4*time.Second
	// endpointBound: requests through the web Service go to the lost web
	// pod until the node is found lost (kube.NodeMonitorGracePeriod, checked
	// every 5 s) and its pods' endpoints are marked not ready.
	endpointBound = kube.NodeMonitorGracePeriod + 15*time.Second
	// replacedBound, with the pods' lost-node toleration (read from the
	// Deployment: deploy/base sets it): the lost pods run again elsewhere
	// once the node is found lost, the toleration has run out, and the
	// replacements are Ready.
	replacedBound = kube.NodeMonitorGracePeriod + 45*time.Second
)

// TestNodes shows on three nodes what one cannot: the greeter's and the
// web's replicas stand on different nodes, a cluster upgrade's drains of
// every node in turn lose no request (the disruption budgets refuse what
// would take a last replica), three greeters on three nodes share the calls,
// and a node lost at once costs a bounded few seconds, is replaced, and
// comes back with nothing of its earlier life serving. Not in parallel: it
// drains and loses nodes under every other test's pods.
func TestNodes(t *testing.T) {
	const ns = "nodes"
	deploy(t, ns, nil)
	if _, err := eventually(t.Context(), 2*time.Minute, replicasReady(ns, 2, "")); err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"greeter", "web"} {
		checkApart(t, ns, app)
	}

	url := serviceURL("web", ns) + "/greeter?name=Node"
	l := startLoop(t.Context(), url, loadRate)
	t.Run("drains", func(t *testing.T) { drainEveryNode(t, ns) })
	drained := l.stop()
	s := summarize(drained)
	t.Logf("%d requests in %s (%.0f/s) through the web Service while every node was drained in turn: %v",
		len(drained), s.span.Round(time.Second), s.rate, s.statuses)
	if s.statuses["200"] != len(drained) {
		for _, r := range drained {
			if r.status != "200" {
				t.Logf("failed: sent %s, took %s: %s", r.at.Format("15:04:05.000"), r.took.Round(time.Millisecond), r.status)
			}
		}
		// The web pods that still run say what their greeter calls met
		// (those the drains evicted took their logs with them).
		for _, p := range livePods(t, ns, "web") {
			if out, err := kubectlOutput(t.Context(), "logs", p.Name, "--container=web", "--namespace="+ns, "--since=3m"); err == nil {
				t.Logf("%s on %s: greeter calls that failed, by error: %v", p.Name, p.Spec.NodeName, failedCalls(out))
			}
		}
		t.Errorf("not every answer was 200 through the drains: %v", s.statuses)
	}

	kubectl(t, "scale", "deployment/greeter", "deployment/web", "--replicas=3", "--namespace="+ns)
	if _, err := eventually(t.Context(), 2*time.Minute, replicasReady(ns, 3, "")); err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"greeter", "web"} {
		checkApart(t, ns, app)
	}
	// Each web learns of the new greeters when one of its connections
	// ages out (see TestBalancing).
	time.Sleep(newPodBound)
	checkSpread(t, ns, url, 3000)

	t.Run("a lost node", func(t *testing.T) { loseNode(t, ns, url) })
}

// lostNodeToleration is how long an app's pods stay on an unreachable node.
func lostNodeToleration(t *testing.T, ns, app string) time.Duration {
	t.Helper()
	d, err := env.cluster.Client.AppsV1().Deployments(ns).Get(t.Context(), app, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tol := range d.Spec.Template.Spec.Tolerations {
		if tol.Key == corev1.TaintNodeUnreachable && tol.TolerationSeconds != nil {
			return time.Duration(*tol.TolerationSeconds) * time.Second
		}
	}
	t.Fatalf("%s does not say how long it stays on an unreachable node", app)
	return 0
}

// replicasReady says why the greeter and the web of ns do not each have n
// Ready pods, none being deleted and none on the node named not.
func replicasReady(ns string, n int, not string) func(context.Context) error {
	return func(ctx context.Context) error {
		for _, app := range []string{"greeter", "web"} {
			list, err := pods(ctx, ns, app)
			if err != nil {
				return err
			}
			ready := 0
			for _, p := range list {
				if p.DeletionTimestamp == nil && p.Spec.NodeName != not && isReady(p) {
					ready++
				}
			}
			if ready != n {
				return fmt.Errorf("%d of %d %s pods ready", ready, n, app)
			}
		}
		return nil
	}
}

func isReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// checkApart checks that an app's pods stand on different nodes.
func checkApart(t *testing.T, ns, app string) {
	t.Helper()
	var nodes []string
	for _, p := range livePods(t, ns, app) {
		nodes = append(nodes, p.Spec.NodeName)
	}
	slices.Sort(nodes)
	t.Logf("%d %s pods on %v", len(nodes), app, nodes)
	if len(slices.Compact(slices.Clone(nodes))) != len(nodes) {
		t.Errorf("%s pods share a node: %v", app, nodes)
	}
}

// drainEveryNode drains each node in turn as a cluster upgrade does: cordon
// and evict with kubectl drain (the eviction API, so the budgets apply),
// uncordon, and wait until every replica is back before the next. Meanwhile
// it asks, without evicting (a dry run), to evict the greeter's last Ready
// pod whenever only one is: the budget must refuse (429) every time.
func drainEveryNode(t *testing.T, ns string) {
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var refused, allowed int
	wg.Go(func() { refused, allowed = askToEvictTheLast(ctx, ns, "greeter") })
	for i := range kube.Nodes {
		node := kube.NodeName(i)
		start := time.Now()
		out, err := kubectlOutput(t.Context(), "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=3m")
		took := time.Since(start)
		kubectl(t, "uncordon", node)
		if err != nil {
			t.Fatalf("drain %s: %v\n%s", node, err, out)
		}
		held := strings.Count(out, "would violate the pod's disruption budget")
		t.Logf("drained %s in %s from %s (%d evictions refused by a budget and retried)", node, took.Round(100*time.Millisecond),
			start.Format("15:04:05.000"), held)
		if _, err := eventually(t.Context(), 2*time.Minute, replicasReady(ns, 2, "")); err != nil {
			t.Fatal(err)
		}
		if _, err := eventually(t.Context(), time.Minute, dnsReady); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	t.Logf("the greeter's budget, asked to evict its last Ready pod while its other one was replaced: refused (429) %d times, allowed %d", refused, allowed)
	if refused == 0 {
		t.Error("no eviction was ever asked of the greeter's last Ready pod: the drains did not show the budget")
	}
	if allowed > 0 {
		t.Errorf("the budget allowed evicting the greeter's last Ready pod %d times", allowed)
	}
}

// askToEvictTheLast asks every 200 ms, while an app has exactly one Ready
// pod that is not being deleted, to evict it as a dry run, until ctx ends;
// it returns how often the budget refused, and how often it allowed while
// that pod was still the only one Ready after the answer (a replacement
// that became Ready in between makes an allowed answer right).
func askToEvictTheLast(ctx context.Context, ns, app string) (refused, allowed int) {
	lastReady := func() []corev1.Pod {
		list, _ := pods(ctx, ns, app)
		var ready []corev1.Pod
		for _, p := range list {
			if p.DeletionTimestamp == nil && isReady(p) {
				ready = append(ready, p)
			}
		}
		return ready
	}
	for ctx.Err() == nil {
		if ready := lastReady(); len(ready) == 1 {
			err := env.cluster.Client.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{
				ObjectMeta:    metav1.ObjectMeta{Name: ready[0].Name, Namespace: ns},
				DeleteOptions: &metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}},
			})
			switch {
			case apierrors.IsTooManyRequests(err):
				refused++
			case err == nil && len(lastReady()) == 1:
				allowed++
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return refused, allowed
}

// dnsReady says why the cluster DNS does not have both its pods Ready.
func dnsReady(ctx context.Context) error {
	list, err := env.cluster.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
	if err != nil {
		return err
	}
	ready := 0
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && isReady(p) {
			ready++
		}
	}
	if ready != 2 {
		return fmt.Errorf("%d of 2 DNS pods ready", ready)
	}
	return nil
}

// kubectlOutput runs the tier's kubectl and returns what it printed.
func kubectlOutput(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, env.cluster.Host.Bins.Kubectl, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.cluster.Kubeconfig)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// loseNode loses a node that holds a greeter and a web pod, under the loop
// through the web Service and a second loop straight to a web pod on a node
// that stays (whose failures are the web's calls to the lost greeter only),
// and measures: how long each loop failed, when the node was found lost,
// when its pods ran again elsewhere; then brings the node back and checks
// that nothing of its earlier life serves.
func loseNode(t *testing.T, ns, url string) {
	lost := kube.NodeName(kube.Nodes - 1)
	var before []corev1.Pod
	for _, app := range []string{"greeter", "web"} {
		for _, p := range livePods(t, ns, app) {
			if p.Spec.NodeName == lost {
				before = append(before, p)
			}
		}
	}
	if len(before) != 2 {
		t.Fatalf("%s holds %d of the greeter's and the web's pods, want one of each", lost, len(before))
	}
	var direct, directPod, lostWeb string
	for _, p := range livePods(t, ns, "web") {
		switch p.Spec.NodeName {
		case kube.NodeName(0):
			direct = "http://" + net.JoinHostPort(p.Status.PodIP, "8080") + "/greeter?name=Direct"
			directPod = p.Name
		case lost:
			lostWeb = p.Name
		}
	}
	if direct == "" {
		t.Fatalf("no web pod on %s", kube.NodeName(0))
	}
	// Through the Service, two kinds of client: one that makes a new
	// connection for every request, to its ClusterIP, each a new choice of
	// kube-proxy's, which may be the lost pod until its endpoint is removed;
	// and one that keeps its connections, to its DNS name (Go's default, and
	// a browser's), whose requests fail only on a connection to the lost pod.
	svc, err := env.cluster.Client.CoreV1().Services(ns).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fresh := &http.Client{Timeout: client.Timeout, Transport: &http.Transport{
		DialContext:       (&net.Dialer{Resolver: kube.Resolver(), Timeout: 5 * time.Second}).DialContext,
		DisableKeepAlives: true,
	}}
	byIP := "http://" + svc.Spec.ClusterIP + "/greeter?name=Node"
	service, named, web := startLoopWith(t.Context(), fresh, byIP, loadRate), startLoop(t.Context(), url, loadRate),
		startLoop(t.Context(), direct, loadRate)
	dns, err := env.cluster.Client.CoreV1().Pods("kube-system").List(t.Context(), metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range dns.Items {
		t.Logf("cluster DNS pod %s on %s", p.Name, p.Spec.NodeName)
	}
	time.Sleep(5 * time.Second)

	t0 := time.Now()
	if err := env.cluster.LoseNode(lost); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s lost: network cut, then its kubelet, containerd, kube-proxy and kube-router killed, in %s", lost, time.Since(t0).Round(time.Millisecond))
	watch, stopWatch := context.WithCancel(t.Context())
	var watched sync.WaitGroup
	var marks podMarks
	watched.Go(func() { marks = watchLeaving(watch, ns, lostWeb, t0) })
	notReady, err := eventually(t.Context(), endpointBound, func(ctx context.Context) error {
		if env.cluster.NodeReady(ctx, lost) == nil {
			return fmt.Errorf("%s is still Ready", lost)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	bound := replacedBound + lostNodeToleration(t, ns, "web")
	replaced, err := eventually(t.Context(), bound+time.Minute, replicasReady(ns, 3, lost))
	if err != nil {
		t.Fatal(err)
	}
	replaced += notReady
	time.Sleep(10 * time.Second) // requests sent just before, answered
	viaService, viaName, viaWeb := service.stop(), named.stop(), web.stop()
	stopWatch()
	watched.Wait()
	t.Logf("the lost web pod %s: %v", lostWeb, marks)
	if marks.endpointNotReady == never || marks.endpointNotReady > endpointBound {
		t.Errorf("the lost web pod's endpoint was still ready %s after the cut", endpointBound)
	}
	if out, err := kubectlOutput(t.Context(), "logs", directPod, "--container=web", "--namespace="+ns, "--since=3m"); err == nil {
		t.Logf("%s's calls to the greeter that failed, by error: %v", directPod, failedCalls(out))
	}
	t.Logf("%s found lost (NotReady) %s after the cut; its greeter and web ran again elsewhere, Ready, %s after it",
		lost, notReady.Round(100*time.Millisecond), replaced.Round(100*time.Millisecond))
	if replaced > bound {
		t.Errorf("the lost pods were replaced %s after the cut, want within %s", replaced.Round(time.Second), bound)
	}
	// Each loop's failures before the lost web pod's endpoint was marked
	// not ready, and after: the loop to a web pod must have none after its
	// bound; the loop of new connections meets stale conntrack entries after
	// it (maxStaleShare), and the one that keeps its connections only when
	// it makes a new one, rarely.
	for _, c := range []struct {
		what     string
		results  []result
		bound    time.Duration
		maxShare float64
	}{
		{"straight to a web pod (the web's calls to the greeter, which it balances)", viaWeb, keepaliveBound, 0},
		{"through the web Service's DNS name, connections kept (kube-proxy)", viaName, endpointBound, maxStaleShare / 10},
		{"through the web Service's ClusterIP, a new connection each (kube-proxy)", viaService, endpointBound, maxStaleShare},
	} {
		w := failures(c.results, t0, min(c.bound, marks.endpointNotReady))
		t.Logf("%s: of %d requests, %d failed %v, the last sent %s after the cut; after %s, %d of %d (%.1f%%); by when they were sent: %s",
			c.what, len(c.results), w.failed, w.kinds, w.last.Round(100*time.Millisecond), w.split.Round(100*time.Millisecond),
			w.after, w.sentAfter, 100*w.share(), failuresOverTime(c.results, t0))
		if w.share() > c.maxShare {
			t.Errorf("%s: %.1f%% of the requests sent after %s failed, want at most %.0f%%", c.what, 100*w.share(), w.split.Round(100*time.Millisecond), 100*c.maxShare)
		}
	}
	// What the stragglers of the new-connection loop meet: kube-proxy
	// deletes stale conntrack entries for UDP only (kubernetes#101607).
	t.Logf("conntrack entries of the test's namespace still leading to the lost web pod, unanswered (SYN_SENT): %d", synSentTo(before, lostWeb))

	back := time.Now()
	if err := env.cluster.RestoreNode(t.Context(), lost); err != nil {
		t.Fatalf("%v\n%s", err, env.cluster.Logs())
	}
	t.Logf("%s back and Ready in %s", lost, time.Since(back).Round(100*time.Millisecond))
	after := startLoop(t.Context(), url, loadRate)
	gone, err := eventually(t.Context(), time.Minute, func(ctx context.Context) error {
		for _, p := range before {
			_, err := env.cluster.Client.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
			if err == nil {
				return fmt.Errorf("%s, of the lost node's earlier life, is still there", p.Name)
			}
			if !apierrors.IsNotFound(err) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	t.Logf("the lost node's earlier pods were gone %s after it came back", gone.Round(100*time.Millisecond))
	if err := notServedBy(t.Context(), ns, before); err != nil {
		t.Error(err)
	}
	time.Sleep(10 * time.Second)
	results := after.stop()
	s := summarize(results)
	t.Logf("%d requests through the web Service after the node came back: %v", len(results), s.statuses)
	if s.statuses["200"] != len(results) {
		t.Errorf("not every answer was 200 after the node came back: %v", s.statuses)
	}
}

// podMarks are when a leaving pod passed each mark, from the cut; never is
// a mark not passed within the watch.
type podMarks struct{ notReady, endpointNotReady, deleting, endpointGone time.Duration }

const never = time.Duration(-1)

func (m podMarks) String() string {
	s := func(d time.Duration) string {
		if d == never {
			return "never"
		}
		return d.Round(100 * time.Millisecond).String()
	}
	return fmt.Sprintf("not Ready %s after the cut, its endpoint not ready %s, the pod being deleted %s, its endpoint gone %s",
		s(m.notReady), s(m.endpointNotReady), s(m.deleting), s(m.endpointGone))
}

// watchLeaving polls a pod and the EndpointSlices of ns every 250 ms until
// ctx ends, and returns when the pod passed each mark.
func watchLeaving(ctx context.Context, ns, pod string, t0 time.Time) podMarks {
	m := podMarks{never, never, never, never}
	mark := func(d *time.Duration, passed bool) {
		if passed && *d == never {
			*d = time.Since(t0)
		}
	}
	for ctx.Err() == nil {
		if p, err := env.cluster.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{}); err == nil {
			mark(&m.notReady, !isReady(*p))
			mark(&m.deleting, p.DeletionTimestamp != nil)
		} else if apierrors.IsNotFound(err) {
			mark(&m.notReady, true)
			mark(&m.deleting, true)
		}
		if list, err := env.cluster.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{}); err == nil {
			listed, ready := false, false
			for _, s := range list.Items {
				for _, e := range s.Endpoints {
					if e.TargetRef != nil && e.TargetRef.Name == pod {
						listed = true
						ready = e.Conditions.Ready == nil || *e.Conditions.Ready
					}
				}
			}
			mark(&m.endpointNotReady, !ready)
			mark(&m.endpointGone, !listed)
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	return m
}

// failedCalls counts the errors of the web's log lines that say the greeter
// was unreachable or failed.
func failedCalls(log string) map[string]int {
	errs := map[string]int{}
	for line := range strings.Lines(log) {
		var l struct{ Msg, Err string }
		if json.Unmarshal([]byte(line), &l) == nil && strings.HasPrefix(l.Msg, "greeter ") {
			errs[shortStatus(l.Msg+": "+l.Err)]++
		}
	}
	return errs
}

// maxStaleShare is the share of requests that may fail after the lost
// pod's endpoint is marked not ready: those of a client whose new
// connection reuses the source port of one that met the lost pod, whose
// conntrack entry still leads there, unanswered, until it times out (120 s
// from its last packet; kube-proxy deletes stale entries for UDP only,
// kubernetes#101607). Four runs measured 0.1-3.3%.
const maxStaleShare = 0.15

// failed counts a loop's failed requests, and those sent split or more
// after the cut.
type failed struct {
	failed           int
	kinds            map[string]int
	last, split      time.Duration
	after, sentAfter int
}

func (f failed) share() float64 {
	if f.sentAfter == 0 {
		return 0
	}
	return float64(f.after) / float64(f.sentAfter)
}

func failures(results []result, t0 time.Time, split time.Duration) failed {
	f := failed{kinds: map[string]int{}, split: split}
	for _, r := range results {
		at := r.at.Sub(t0)
		if at >= split {
			f.sentAfter++
		}
		if r.status == "200" {
			continue
		}
		f.failed++
		f.kinds[shortStatus(r.status)]++
		f.last = max(f.last, at)
		if at >= split {
			f.after++
		}
	}
	return f
}

// synSentTo counts the conntrack entries of the test's network namespace
// (the first node's) that lead to the pod named name, among pods, and were
// never answered.
func synSentTo(pods []corev1.Pod, name string) int {
	var ip string
	for _, p := range pods {
		if p.Name == name {
			ip = p.Status.PodIP
		}
	}
	b, err := os.ReadFile("/proc/net/nf_conntrack")
	if err != nil || ip == "" {
		return -1
	}
	n := 0
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, " SYN_SENT ") && strings.Contains(line, "[UNREPLIED] src="+ip+" ") {
			n++
		}
	}
	return n
}

// failuresOverTime counts the failed requests by the 5 s after t0 they were
// sent in, and their kinds.
func failuresOverTime(results []result, t0 time.Time) string {
	type bucket struct {
		at    time.Duration
		kinds map[string]int
	}
	var buckets []bucket
	for _, r := range results {
		if r.status == "200" || r.at.Before(t0) {
			continue
		}
		at := r.at.Sub(t0).Truncate(5 * time.Second)
		if len(buckets) == 0 || buckets[len(buckets)-1].at != at {
			buckets = append(buckets, bucket{at, map[string]int{}})
		}
		buckets[len(buckets)-1].kinds[shortStatus(r.status)]++
	}
	var out []string
	for _, b := range buckets {
		out = append(out, fmt.Sprintf("+%s %v", b.at, b.kinds))
	}
	return strings.Join(out, "; ")
}

// shortStatus is a status, or the end of an error, which says what kind.
func shortStatus(status string) string {
	if len(status) > 40 {
		return status[len(status)-40:]
	}
	return status
}

// notServedBy says which of the gone pods' addresses an EndpointSlice of ns
// still lists.
func notServedBy(ctx context.Context, ns string, gone []corev1.Pod) error {
	slices, err := env.cluster.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			for _, p := range gone {
				if e.TargetRef != nil && e.TargetRef.Name == p.Name {
					return fmt.Errorf("EndpointSlice %s still lists %s, of the lost node's earlier life", s.Name, p.Name)
				}
			}
		}
	}
	return nil
}
