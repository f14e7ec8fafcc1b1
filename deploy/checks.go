package deploy

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// Code is what the code says, for the manifests to agree with.
type Code struct {
	// ListenPorts are the ports each image's binary listens on by default.
	ListenPorts map[string][]int
	// MetricsPort and MetricsPath are where services serve Prometheus
	// metrics; MetricsImages the images that do.
	MetricsPort   int
	MetricsPath   string
	MetricsImages []string
	// SelectorPort is the port the static selector dials by default.
	SelectorPort int
	// Services are the go-micro services' names: each the name of its
	// Kubernetes Service, which the static selector resolves.
	Services []string
	// SidecarImage is the health sidecar's image; SidecarFlags the flags its
	// binary defines; SidecarPath and SidecarLivePath its two paths.
	SidecarImage                 string
	SidecarFlags                 []string
	SidecarPath, SidecarLivePath string
	// HealthPaths is the path of the probes of each image that runs without
	// the sidecar.
	HealthPaths map[string]string
	// ShutdownTimeout bounds a service's graceful stop.
	ShutdownTimeout time.Duration
	// Images are the images skaffold builds; PinnedImages those used as
	// published (NATS's), each at the version the code pins.
	Images, PinnedImages []string
	// ConfigParsers parse the configuration file, for each image that
	// reads one, from the file ConfigFileEnv names.
	ConfigParsers map[string]func([]byte) error
	ConfigFileEnv string
	// MemoryLimitEnv is the variable a binary reads its container's memory
	// limit from.
	MemoryLimitEnv string
	// Calls are, by the Deployment that makes them, the services it calls:
	// the web frontend and the micro toolkit every service, the API gateway
	// those on its allow-list, the services NATS. Each call is on
	// SelectorPort unless CallPorts names another port for the callee.
	Calls     map[string][]string
	CallPorts map[string]int
}

// Check is one consistency check.
type Check struct {
	Name string
	Run  func(Objects, Code) error
}

// Checks are every consistency check of rendered manifests.
var Checks = []Check{
	{"every Service selects the pods of exactly one Deployment", checkSelectors},
	{"ports agree with the code", checkPorts},
	{"probes and the sidecar's args agree with the code", checkProbes},
	{"a probe's named port is one of its own container's", checkProbePortNames},
	{"the static selector dials each service's headless Service", checkSelectorPort},
	{"images are skaffold's artifacts, each used", checkImages},
	{"every container is probed, bounded and locked down", checkHardening},
	{"the grace period outlasts preStop and the graceful stop", checkGracePeriod},
	{"a Deployment of several replicas keeps one through a drain", checkDisruptionBudgets},
	{"pods leave a lost node within a minute, not five", checkLostNodeTolerations},
	{"every container with a memory limit tells its binary the limit", checkMemoryLimit},
	{"every workload has its own ServiceAccount without a token", checkServiceAccounts},
	{"every object has the recommended labels", checkLabels},
	{"network policies select pods and name their ports", checkNetworkPolicies},
	{"network policies let each caller reach the services it calls", checkPolicyPaths},
	{"pods are annotated for Prometheus where metrics are served", checkScrapeAnnotations},
	{"each config file read is mounted from a ConfigMap the code accepts", checkConfig},
}

func checkSelectors(o Objects, _ Code) error {
	var errs []error
	for _, s := range o.Services {
		if len(s.Spec.Selector) == 0 {
			errs = append(errs, fmt.Errorf("Service %s has no selector", s.Name))
			continue
		}
		if n := len(selected(o, s)); n != 1 {
			errs = append(errs, fmt.Errorf("Service %s selects the pods of %d Deployments, want 1", s.Name, n))
		}
	}
	return errors.Join(errs...)
}

// selected are the Deployments whose pods a Service selects.
func selected(o Objects, s corev1.Service) []appsv1.Deployment {
	var ds []appsv1.Deployment
	sel := labels.SelectorFromSet(s.Spec.Selector)
	for _, d := range o.Workloads() {
		if d.Namespace == s.Namespace && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			ds = append(ds, d)
		}
	}
	return ds
}

func checkPorts(o Objects, c Code) error {
	var errs []error
	for _, d := range o.Workloads() {
		for _, ctr := range d.Spec.Template.Spec.Containers {
			want, known := c.ListenPorts[ctr.Image]
			if !known {
				errs = append(errs, fmt.Errorf("%s/%s: image %q: no code port known", d.Name, ctr.Name, ctr.Image))
				continue
			}
			var got []int
			for _, p := range ctr.Ports {
				got = append(got, int(p.ContainerPort))
			}
			if !slices.Equal(sorted(got), sorted(want)) {
				errs = append(errs, fmt.Errorf("%s/%s: containerPorts %v, want the ports %v its binary listens on", d.Name, ctr.Name, got, want))
			}
		}
	}
	for _, s := range o.Services {
		for _, d := range selected(o, s) {
			for _, p := range s.Spec.Ports {
				ctr, port, ok := resolvePort(d.Spec.Template.Spec, p.TargetPort)
				if !ok {
					errs = append(errs, fmt.Errorf("Service %s port %d: targetPort %s is no container port of %s", s.Name, p.Port, p.TargetPort.String(), d.Name))
					continue
				}
				if want := c.ListenPorts[ctr.Image]; !slices.Contains(want, port) {
					errs = append(errs, fmt.Errorf("Service %s port %d: targetPort %d, but %s listens on %v", s.Name, p.Port, port, ctr.Name, want))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func sorted(s []int) []int {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func checkScrapeAnnotations(o Objects, c Code) error {
	var errs []error
	for _, d := range o.Workloads() {
		a := d.Spec.Template.Annotations
		var serves bool
		for _, ctr := range d.Spec.Template.Spec.Containers {
			serves = serves || slices.Contains(c.MetricsImages, ctr.Image)
		}
		if !serves {
			continue
		}
		if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != fmt.Sprint(c.MetricsPort) || a["prometheus.io/path"] != c.MetricsPath {
			errs = append(errs, fmt.Errorf("Deployment %s: scrape annotations %q/%q/%q, want \"true\"/%d/%s",
				d.Name, a["prometheus.io/scrape"], a["prometheus.io/port"], a["prometheus.io/path"], c.MetricsPort, c.MetricsPath))
		}
	}
	return errors.Join(errs...)
}

// resolvePort finds the container and port number a named or numbered port
// refers to in a pod.
func resolvePort(pod corev1.PodSpec, p intstr.IntOrString) (corev1.Container, int, bool) {
	for _, ctr := range pod.Containers {
		for _, cp := range ctr.Ports {
			if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
				return ctr, int(cp.ContainerPort), true
			}
		}
	}
	return corev1.Container{}, 0, false
}

func checkProbes(o Objects, c Code) error {
	var errs []error
	for _, d := range o.Workloads() {
		pod := d.Spec.Template.Spec
		var sidecar *corev1.Container
		for i := range pod.Containers {
			if pod.Containers[i].Image == c.SidecarImage {
				sidecar = &pod.Containers[i]
			}
		}
		if sidecar == nil {
			errs = append(errs, checkOwnProbes(d, c))
			continue
		}
		for _, arg := range sidecar.Args {
			name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
			if !strings.HasPrefix(arg, "-") || !slices.Contains(c.SidecarFlags, name) {
				errs = append(errs, fmt.Errorf("%s/%s: arg %q is not a flag the sidecar defines", d.Name, sidecar.Name, arg))
			}
		}
		for _, ctr := range pod.Containers {
			want := c.SidecarPath // the service's liveness is the sidecar's check
			if ctr.Name == sidecar.Name {
				want = c.SidecarLivePath
			} else if p := ctr.ReadinessProbe; p != nil && p.GRPC != nil && !slices.Contains(c.ListenPorts[ctr.Image], int(p.GRPC.Port)) {
				errs = append(errs, fmt.Errorf("%s/%s: gRPC readiness probe on port %d, where %s does not serve",
					d.Name, ctr.Name, p.GRPC.Port, ctr.Name))
			}
			probe := ctr.LivenessProbe
			if probe == nil || probe.HTTPGet == nil {
				errs = append(errs, fmt.Errorf("%s/%s: no HTTP liveness probe", d.Name, ctr.Name))
				continue
			}
			target, _, ok := resolvePort(pod, probe.HTTPGet.Port)
			if probe.HTTPGet.Path != want || !ok || target.Name != sidecar.Name {
				errs = append(errs, fmt.Errorf("%s/%s: liveness probe %s on port %s, want the sidecar's %s on its port",
					d.Name, ctr.Name, probe.HTTPGet.Path, probe.HTTPGet.Port.String(), want))
			}
		}
	}
	return errors.Join(errs...)
}

// checkProbePortNames checks what the API server accepts and the kubelet
// does not run: the kubelet looks a probe's (or a lifecycle hook's) port name
// up among the ports of the container it belongs to, never the pod's other
// containers. A name declared elsewhere makes the probe error every period
// ("port not found"), and an errored probe is never counted as failed: the
// container is never restarted. A port of another container of the pod is
// reachable by its number.
func checkProbePortNames(o Objects, _ Code) error {
	var errs []error
	for _, d := range o.Workloads() {
		for _, ctr := range d.Spec.Template.Spec.Containers {
			handlers := map[string]*corev1.ProbeHandler{}
			for kind, p := range map[string]*corev1.Probe{"liveness": ctr.LivenessProbe, "readiness": ctr.ReadinessProbe, "startup": ctr.StartupProbe} {
				if p != nil {
					handlers[kind+" probe"] = &p.ProbeHandler
				}
			}
			if l := ctr.Lifecycle; l != nil {
				for kind, h := range map[string]*corev1.LifecycleHandler{"postStart hook": l.PostStart, "preStop hook": l.PreStop} {
					if h != nil {
						handlers[kind] = &corev1.ProbeHandler{HTTPGet: h.HTTPGet, TCPSocket: h.TCPSocket}
					}
				}
			}
			for kind, h := range handlers {
				var port intstr.IntOrString
				switch {
				case h.HTTPGet != nil:
					port = h.HTTPGet.Port
				case h.TCPSocket != nil:
					port = h.TCPSocket.Port
				default:
					continue
				}
				if port.Type == intstr.String && !slices.ContainsFunc(ctr.Ports, func(p corev1.ContainerPort) bool { return p.Name == port.StrVal }) {
					errs = append(errs, fmt.Errorf("%s/%s: %s names port %q, which %s does not declare: the kubelet cannot resolve it (use the number)",
						d.Name, ctr.Name, kind, port.StrVal, ctr.Name))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// checkOwnProbes checks a pod without the sidecar: each container's probes
// call its own health path.
func checkOwnProbes(d appsv1.Deployment, c Code) error {
	var errs []error
	pod := d.Spec.Template.Spec
	for _, ctr := range pod.Containers {
		for kind, p := range map[string]*corev1.Probe{"liveness": ctr.LivenessProbe, "readiness": ctr.ReadinessProbe} {
			if p == nil || p.HTTPGet == nil {
				errs = append(errs, fmt.Errorf("%s/%s: no HTTP %s probe", d.Name, ctr.Name, kind))
				continue
			}
			target, _, ok := resolvePort(pod, p.HTTPGet.Port)
			if want := c.HealthPaths[ctr.Image]; p.HTTPGet.Path != want || !ok || target.Name != ctr.Name {
				errs = append(errs, fmt.Errorf("%s/%s: %s probe %s on port %s, want %s on its own port",
					d.Name, ctr.Name, kind, p.HTTPGet.Path, p.HTTPGet.Port.String(), want))
			}
		}
	}
	return errors.Join(errs...)
}

func checkSelectorPort(o Objects, c Code) error {
	var errs []error
	for _, name := range c.Services {
		i := slices.IndexFunc(o.Services, func(s corev1.Service) bool { return s.Name == name })
		if i < 0 {
			errs = append(errs, fmt.Errorf("no Service named %s, the name the static selector resolves", name))
			continue
		}
		s := o.Services[i]
		// Headless, so that the name resolves to every ready pod, which
		// the client balances calls over.
		if s.Spec.ClusterIP != corev1.ClusterIPNone {
			errs = append(errs, fmt.Errorf("Service %s is not headless (clusterIP: None): its callers would each reach one pod", name))
		}
		if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return int(p.Port) == c.SelectorPort }) {
			errs = append(errs, fmt.Errorf("Service %s does not expose port %d, which the static selector dials", name, c.SelectorPort))
		}
	}
	return errors.Join(errs...)
}

// checkMemoryLimit requires, for every container with a memory limit, the
// variable its binary sets the Go runtime's memory limit from, filled by the
// downward API with that container's own limit: without it the runtime
// grows its heap into the OOM killer.
func checkMemoryLimit(o Objects, c Code) error {
	var errs []error
	for _, d := range o.Workloads() {
		for _, ctr := range d.Spec.Template.Spec.Containers {
			if _, ok := ctr.Resources.Limits[corev1.ResourceMemory]; !ok {
				continue
			}
			// The project's binaries read c.MemoryLimitEnv; any other Go
			// program (NATS) the Go runtime's own GOMEMLIMIT.
			i := slices.IndexFunc(ctr.Env, func(e corev1.EnvVar) bool { return e.Name == c.MemoryLimitEnv || e.Name == "GOMEMLIMIT" })
			var ref *corev1.ResourceFieldSelector
			if i >= 0 && ctr.Env[i].ValueFrom != nil {
				ref = ctr.Env[i].ValueFrom.ResourceFieldRef
			}
			if ref == nil || ref.Resource != "limits.memory" || (ref.ContainerName != "" && ref.ContainerName != ctr.Name) ||
				(!ref.Divisor.IsZero() && ref.Divisor.Value() != 1) {
				errs = append(errs, fmt.Errorf("%s/%s: has a memory limit but no %s from its own limits.memory (in bytes)", d.Name, ctr.Name, c.MemoryLimitEnv))
			}
		}
	}
	return errors.Join(errs...)
}

// checkDisruptionBudgets requires a PodDisruptionBudget for every
// Deployment of more than one replica, keeping at least one pod through a
// drain: more than one replica is there to survive exactly that.
func checkDisruptionBudgets(o Objects, _ Code) error {
	var errs []error
	for _, d := range o.Workloads() {
		if d.Spec.Replicas == nil || *d.Spec.Replicas <= 1 {
			continue
		}
		pods := labels.Set(d.Spec.Template.Labels)
		covered := false
		for _, pdb := range o.Disruptions {
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			if err != nil || !sel.Matches(pods) {
				continue
			}
			keeps := pdb.Spec.MinAvailable != nil && pdb.Spec.MinAvailable.IntValue() >= 1 ||
				pdb.Spec.MaxUnavailable != nil && pdb.Spec.MaxUnavailable.IntValue() < int(*d.Spec.Replicas)
			if !keeps {
				errs = append(errs, fmt.Errorf("PodDisruptionBudget %s lets a drain take every pod of %s", pdb.Name, d.Name))
			}
			covered = true
		}
		if !covered {
			errs = append(errs, fmt.Errorf("Deployment %s runs %d replicas and no PodDisruptionBudget selects its pods", d.Name, *d.Spec.Replicas))
		}
	}
	return errors.Join(errs...)
}

// lostNodeTaints are the taints the node lifecycle controller puts on a
// node it finds lost; a pod that does not say otherwise tolerates each for
// 300 s (the DefaultTolerationSeconds admission plugin), which leaves its
// Deployment a replica short for five minutes.
var lostNodeTaints = []string{corev1.TaintNodeUnreachable, corev1.TaintNodeNotReady}

// The bounds of a lost-node toleration: long enough that a node whose
// kubelet pauses briefly keeps its pods, short enough that a lost one's are
// replaced within about a minute of it being found lost.
const (
	minLostNodeToleration = 10
	maxLostNodeToleration = 60
)

// checkLostNodeTolerations requires every Deployment to tolerate each
// lost-node taint for a time within the bounds above.
func checkLostNodeTolerations(o Objects, _ Code) error {
	var errs []error
	for _, d := range o.Workloads() {
		for _, taint := range lostNodeTaints {
			i := slices.IndexFunc(d.Spec.Template.Spec.Tolerations, func(t corev1.Toleration) bool {
				return t.Key == taint && t.Effect == corev1.TaintEffectNoExecute
			})
			if i < 0 {
				errs = append(errs, fmt.Errorf("Deployment %s does not say how long it stays on a node tainted %s: 300 s by default", d.Name, taint))
				continue
			}
			s := d.Spec.Template.Spec.Tolerations[i].TolerationSeconds
			if s == nil || *s < minLostNodeToleration || *s > maxLostNodeToleration {
				errs = append(errs, fmt.Errorf("Deployment %s tolerates %s for %s, want %d to %d s",
					d.Name, taint, secondsOrForever(s), minLostNodeToleration, maxLostNodeToleration))
			}
		}
	}
	return errors.Join(errs...)
}

func secondsOrForever(s *int64) string {
	if s == nil {
		return "ever"
	}
	return fmt.Sprintf("%d s", *s)
}

func checkImages(o Objects, c Code) error {
	var errs []error
	used := map[string]bool{}
	for _, d := range o.Workloads() {
		for _, ctr := range d.Spec.Template.Spec.Containers {
			used[ctr.Image] = true
			if !slices.Contains(c.Images, ctr.Image) && !slices.Contains(c.PinnedImages, ctr.Image) {
				errs = append(errs, fmt.Errorf("%s/%s: image %q is neither built by skaffold nor one pinned by the code", d.Name, ctr.Name, ctr.Image))
			}
		}
	}
	for _, img := range c.Images {
		if !used[img] {
			errs = append(errs, fmt.Errorf("skaffold builds %q, which no container uses", img))
		}
	}
	for _, img := range c.PinnedImages {
		if !used[img] {
			errs = append(errs, fmt.Errorf("no container uses %q, the image the code pins", img))
		}
	}
	return errors.Join(errs...)
}

func checkHardening(o Objects, c Code) error {
	var errs []error
	for _, d := range o.Workloads() {
		pod := d.Spec.Template.Spec
		for _, ctr := range pod.Containers {
			where := d.Name + "/" + ctr.Name
			if ctr.LivenessProbe == nil || ctr.ReadinessProbe == nil {
				errs = append(errs, fmt.Errorf("%s: needs a liveness and a readiness probe", where))
			}
			if p := ctr.ReadinessProbe; p != nil && p.TCPSocket != nil {
				errs = append(errs, fmt.Errorf("%s: a bare TCP readiness probe passes under a mesh with the service down", where))
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := ctr.Resources.Requests[r]; !ok {
					errs = append(errs, fmt.Errorf("%s: no %s request", where, r))
				}
			}
			if _, ok := ctr.Resources.Limits[corev1.ResourceMemory]; !ok {
				errs = append(errs, fmt.Errorf("%s: no memory limit", where))
			}
			// A CPU limit stops a container for the rest of a CFS period
			// once it is used up, refusals and probes included: the servers
			// (the images that serve metrics) shed their own load and have
			// none (docs/reliability.md, Overload); the helpers have one.
			_, limited := ctr.Resources.Limits[corev1.ResourceCPU]
			if server := slices.Contains(c.MetricsImages, ctr.Image); server && limited {
				errs = append(errs, fmt.Errorf("%s: a server with a CPU limit, which stalls its refusals", where))
			} else if !server && !limited {
				errs = append(errs, fmt.Errorf("%s: no CPU limit", where))
			}
			sc := ctr.SecurityContext
			if sc == nil {
				errs = append(errs, fmt.Errorf("%s: no securityContext", where))
				continue
			}
			if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				errs = append(errs, fmt.Errorf("%s: runAsNonRoot is not true", where))
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				errs = append(errs, fmt.Errorf("%s: readOnlyRootFilesystem is not true", where))
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				errs = append(errs, fmt.Errorf("%s: allowPrivilegeEscalation is not false", where))
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				errs = append(errs, fmt.Errorf("%s: capabilities must drop ALL and add none", where))
			}
			if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				errs = append(errs, fmt.Errorf("%s: seccompProfile is not RuntimeDefault", where))
			}
		}
	}
	return errors.Join(errs...)
}

func checkGracePeriod(o Objects, c Code) error {
	var errs []error
	for _, d := range o.Workloads() {
		pod := d.Spec.Template.Spec
		grace := 30 * time.Second // Kubernetes' default
		if pod.TerminationGracePeriodSeconds != nil {
			grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		}
		for _, ctr := range pod.Containers {
			var pause time.Duration
			if l := ctr.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
				pause = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
			}
			if grace <= pause+c.ShutdownTimeout {
				errs = append(errs, fmt.Errorf("%s/%s: terminationGracePeriodSeconds %s is not above preStop %s + graceful stop %s",
					d.Name, ctr.Name, grace, pause, c.ShutdownTimeout))
			}
		}
	}
	return errors.Join(errs...)
}

func checkServiceAccounts(o Objects, _ Code) error {
	var errs []error
	accounts := map[string]corev1.ServiceAccount{}
	for _, sa := range o.ServiceAccounts {
		accounts[sa.Name] = sa
	}
	owner := map[string]string{}
	for _, d := range o.Workloads() {
		pod := d.Spec.Template.Spec
		sa, ok := accounts[pod.ServiceAccountName]
		switch {
		case pod.ServiceAccountName == "" || !ok:
			errs = append(errs, fmt.Errorf("Deployment %s: no ServiceAccount of its own (serviceAccountName %q)", d.Name, pod.ServiceAccountName))
			continue
		case owner[sa.Name] != "":
			errs = append(errs, fmt.Errorf("Deployments %s and %s share ServiceAccount %s", owner[sa.Name], d.Name, sa.Name))
		}
		owner[sa.Name] = d.Name
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken ||
			pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			errs = append(errs, fmt.Errorf("Deployment %s: its pods would get a token: set automountServiceAccountToken: false", d.Name))
		}
	}
	return errors.Join(errs...)
}

// Labels every object and pod carries.
var recommendedLabels = []string{"app.kubernetes.io/name", "app.kubernetes.io/part-of"}

func checkLabels(o Objects, _ Code) error {
	var errs []error
	for _, doc := range o.YAML {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return err
		}
		// These belong to the application, not to one part of it.
		want := recommendedLabels
		if obj.Kind == "NetworkPolicy" || obj.Kind == "ConfigMap" {
			want = want[1:]
		}
		for _, l := range want {
			if obj.Metadata.Labels[l] == "" {
				errs = append(errs, fmt.Errorf("%s %s: no label %s", obj.Kind, obj.Metadata.Name, l))
			}
		}
	}
	for _, d := range o.Workloads() {
		for _, l := range recommendedLabels {
			if d.Spec.Template.Labels[l] == "" {
				errs = append(errs, fmt.Errorf("Deployment %s: pods have no label %s", d.Name, l))
			}
		}
	}
	return errors.Join(errs...)
}

// OnlyPodAnnotationsDiffer checks that variant is base with pod-template
// annotations added or changed, and nothing else; it returns the annotations
// variant sets on every pod template.
func OnlyPodAnnotationsDiffer(base, variant Objects) (map[string]string, error) {
	if base.Count() != variant.Count() {
		return nil, fmt.Errorf("%d objects, not the base's %d", variant.Count(), base.Count())
	}
	var added map[string]string
	for i := range base.YAML {
		b, err := withoutPodAnnotations(base.YAML[i])
		if err != nil {
			return nil, err
		}
		v, err := withoutPodAnnotations(variant.YAML[i])
		if err != nil {
			return nil, err
		}
		if !reflect.DeepEqual(b, v) {
			return nil, fmt.Errorf("object %d differs in more than its pod annotations:\nbase:    %s\nvariant: %s", i, base.YAML[i], variant.YAML[i])
		}
	}
	for i, d := range variant.Deployments {
		diff := map[string]string{}
		for k, v := range d.Spec.Template.Annotations {
			if base.Deployments[i].Spec.Template.Annotations[k] != v {
				diff[k] = v
			}
		}
		if added != nil && !maps.Equal(added, diff) {
			return nil, fmt.Errorf("Deployment %s's pods get %v, others %v", d.Name, diff, added)
		}
		added = diff
	}
	return added, nil
}

func withoutPodAnnotations(doc []byte) (map[string]any, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(doc, &obj); err != nil {
		return nil, err
	}
	if spec, ok := obj["spec"].(map[string]any); ok {
		if tmpl, ok := spec["template"].(map[string]any); ok {
			if md, ok := tmpl["metadata"].(map[string]any); ok {
				delete(md, "annotations")
			}
		}
	}
	return obj, nil
}

func checkNetworkPolicies(o Objects, _ Code) error {
	var errs []error
	for _, np := range o.NetworkPolicies {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			errs = append(errs, fmt.Errorf("NetworkPolicy %s: %w", np.Name, err))
			continue
		}
		var pods []appsv1.Deployment
		for _, d := range o.Workloads() {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				pods = append(pods, d)
			}
		}
		if len(pods) == 0 {
			errs = append(errs, fmt.Errorf("NetworkPolicy %s selects no pod", np.Name))
		}
		for _, rule := range np.Spec.Ingress {
			errs = append(errs, namedPorts(np.Name, "into", rule.Ports, pods))
		}
		// A named port in an egress rule must be named by every pod the
		// rule lets through, too: kube-router v2.1.0 resolves it over all of
		// them, and a pod without it widened the rule (the gateway, allowed
		// the services' grpc port, reached the web's 8080).
		for _, rule := range np.Spec.Egress {
			var peers []appsv1.Deployment
			for _, d := range o.Workloads() {
				if egressTo(rule.To, d) {
					peers = append(peers, d)
				}
			}
			errs = append(errs, namedPorts(np.Name, "to", rule.Ports, peers))
		}
	}
	return errors.Join(errs...)
}

// namedPorts says which of ports, by name, a Deployment's pods do not name.
func namedPorts(policy, direction string, ports []networkingv1.NetworkPolicyPort, ds []appsv1.Deployment) error {
	var errs []error
	for _, p := range ports {
		if p.Port == nil || p.Port.Type != intstr.String {
			continue
		}
		for _, d := range ds {
			if _, _, ok := resolvePort(d.Spec.Template.Spec, *p.Port); !ok {
				errs = append(errs, fmt.Errorf("NetworkPolicy %s allows port %q %s %s, whose pods do not name it", policy, p.Port.StrVal, direction, d.Name))
			}
		}
	}
	return errors.Join(errs...)
}

// egressTo says whether an egress rule's peers include the Deployment's
// pods in the policy's namespace (a rule with no peers reaches every pod).
func egressTo(peers []networkingv1.NetworkPolicyPeer, d appsv1.Deployment) bool {
	if len(peers) == 0 {
		return true
	}
	return slices.ContainsFunc(peers, func(p networkingv1.NetworkPolicyPeer) bool {
		if p.PodSelector == nil || p.NamespaceSelector != nil || p.IPBlock != nil {
			return false
		}
		s, err := metav1.LabelSelectorAsSelector(p.PodSelector)
		return err == nil && s.Matches(labels.Set(d.Spec.Template.Labels))
	})
}

// checkPolicyPaths requires that the network policies let each caller
// deployed reach each service it calls on the static selector's port: the
// service's ingress from the caller's pods, where a policy isolates the
// service's ingress, and the caller's egress to the service's pods, where
// one isolates the caller's egress. make new-service copies the greeter's
// policies; this proves a service added by hand did not miss one.
func checkPolicyPaths(o Objects, c Code) error {
	byName := map[string]appsv1.Deployment{}
	for _, d := range o.Workloads() {
		byName[d.Name] = d
	}
	var errs []error
	for _, from := range slices.Sorted(maps.Keys(c.Calls)) {
		caller, ok := byName[from]
		if !ok {
			continue // not deployed with these profiles
		}
		for _, name := range c.Calls[from] {
			service, ok := byName[name]
			if !ok {
				errs = append(errs, fmt.Errorf("%s calls %s: no Deployment %s", from, name, name))
				continue
			}
			port := c.SelectorPort
			if p, ok := c.CallPorts[name]; ok {
				port = p
			}
			if isolated(o, service, networkingv1.PolicyTypeIngress) && !policyAllows(o, service, caller, service, port, networkingv1.PolicyTypeIngress) {
				errs = append(errs, fmt.Errorf("no NetworkPolicy lets %s accept %s's calls on port %d", name, from, port))
			}
			if isolated(o, caller, networkingv1.PolicyTypeEgress) && !policyAllows(o, caller, service, service, port, networkingv1.PolicyTypeEgress) {
				errs = append(errs, fmt.Errorf("no NetworkPolicy lets %s call %s on port %d", from, name, port))
			}
		}
	}
	return errors.Join(errs...)
}

// isolated says whether a policy of this type selects the Deployment's pods:
// then only what some policy allows gets through.
func isolated(o Objects, d appsv1.Deployment, kind networkingv1.PolicyType) bool {
	return slices.ContainsFunc(o.NetworkPolicies, func(np networkingv1.NetworkPolicy) bool {
		s, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		return err == nil && slices.Contains(np.Spec.PolicyTypes, kind) && s.Matches(labels.Set(d.Spec.Template.Labels))
	})
}

// policyAllows says whether a policy of this type selecting subject's pods
// has a rule whose peer selects peer's pods (in the same namespace), on a
// port that is port on target's pods.
func policyAllows(o Objects, subject, peer, target appsv1.Deployment, port int, kind networkingv1.PolicyType) bool {
	matches := func(sel *metav1.LabelSelector, d appsv1.Deployment) bool {
		s, err := metav1.LabelSelectorAsSelector(sel)
		return err == nil && s.Matches(labels.Set(d.Spec.Template.Labels))
	}
	for _, np := range o.NetworkPolicies {
		if !slices.Contains(np.Spec.PolicyTypes, kind) || !matches(&np.Spec.PodSelector, subject) {
			continue
		}
		type rule struct {
			peers []networkingv1.NetworkPolicyPeer
			ports []networkingv1.NetworkPolicyPort
		}
		var rules []rule
		for _, r := range np.Spec.Ingress {
			rules = append(rules, rule{r.From, r.Ports})
		}
		for _, r := range np.Spec.Egress {
			rules = append(rules, rule{r.To, r.Ports})
		}
		for _, r := range rules {
			peerOK := slices.ContainsFunc(r.peers, func(p networkingv1.NetworkPolicyPeer) bool {
				return p.NamespaceSelector == nil && p.IPBlock == nil && p.PodSelector != nil && matches(p.PodSelector, peer)
			})
			portOK := slices.ContainsFunc(r.ports, func(p networkingv1.NetworkPolicyPort) bool {
				if p.Port == nil {
					return true
				}
				_, n, ok := resolvePort(target.Spec.Template.Spec, *p.Port)
				return ok && n == port
			})
			if peerOK && portOK {
				return true
			}
		}
	}
	return false
}

func checkConfig(o Objects, c Code) error {
	var errs []error
	maps := map[string]corev1.ConfigMap{}
	for _, cm := range o.ConfigMaps {
		maps[cm.Name] = cm
	}
	for _, d := range o.Workloads() {
		pod := d.Spec.Template.Spec
		for _, ctr := range pod.Containers {
			parse, reads := c.ConfigParsers[ctr.Image]
			var file string
			for _, e := range ctr.Env {
				if e.Name == c.ConfigFileEnv {
					file = e.Value
				}
			}
			where := d.Name + "/" + ctr.Name
			if !reads || file == "" {
				if reads {
					errs = append(errs, fmt.Errorf("%s: %s is not set: the service runs on its defaults", where, c.ConfigFileEnv))
				}
				continue
			}
			data, err := mountedFile(pod, ctr, maps, file)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				continue
			}
			if err := parse(data); err != nil {
				errs = append(errs, fmt.Errorf("%s: the service would refuse %s: %w", where, file, err))
			}
		}
	}
	return errors.Join(errs...)
}

// mountedFile is the content of file in the container, from the ConfigMap
// mounted where it lies.
func mountedFile(pod corev1.PodSpec, ctr corev1.Container, maps map[string]corev1.ConfigMap, file string) ([]byte, error) {
	for _, m := range ctr.VolumeMounts {
		key, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			cm, ok := maps[v.ConfigMap.Name]
			if !ok {
				return nil, fmt.Errorf("volume %s names ConfigMap %s, which is not in the manifests", v.Name, v.ConfigMap.Name)
			}
			data, ok := cm.Data[key]
			if !ok {
				return nil, fmt.Errorf("ConfigMap %s has no key %s for %s", cm.Name, key, file)
			}
			return []byte(data), nil
		}
	}
	return nil, fmt.Errorf("%s is not in a mounted ConfigMap", file)
}
