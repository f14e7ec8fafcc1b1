package deploy

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Each check is shown to fail: the real rendering, broken in one place the
// check exists to catch.
func TestEachCheckCatchesItsDrift(t *testing.T) {
	s := loadSkaffold(t)
	good := render(t, s, s.Profiles())
	goodCode := code(t, s)
	goodCode.Images = s.Images(s.Profiles())

	cases := []struct {
		what    string
		check   func(Objects, Code) error
		breakIt func(*Objects, *Code)
	}{
		{"a selector that matches no pod", checkSelectors, func(o *Objects, _ *Code) {
			service(o, "greeter").Spec.Selector = map[string]string{"app.kubernetes.io/name": "gretter"}
		}},
		{"a selector that matches two Deployments", checkSelectors, func(o *Objects, _ *Code) {
			service(o, "web").Spec.Selector = map[string]string{"app.kubernetes.io/part-of": "micro-on-kubernetes"}
		}},
		{"a containerPort the binary does not listen on", checkPorts, func(o *Objects, _ *Code) {
			container(o, "greeter", "greeter").Ports[0].ContainerPort = 9090
		}},
		{"a targetPort no container names", checkPorts, func(o *Objects, _ *Code) {
			service(o, "web").Spec.Ports[0].TargetPort = intstr.FromString("https")
		}},
		{"a sidecar arg the sidecar does not define", checkProbes, func(o *Objects, _ *Code) {
			c := container(o, "greeter", "health")
			c.Args = append(c.Args, "--health_port=8081")
		}},
		{"a liveness probe that is not the sidecar's check", checkProbes, func(o *Objects, _ *Code) {
			container(o, "greeter", "greeter").LivenessProbe.HTTPGet.Path = "/healthz"
		}},
		{"a liveness probe on the service's own port", checkProbes, func(o *Objects, _ *Code) {
			container(o, "greeter", "greeter").LivenessProbe.HTTPGet.Port = intstr.FromString("grpc")
		}},
		// What a real node showed and every other check passed: the
		// sidecar's port, named on the greeter's liveness probe.
		{"a probe naming another container's port", checkProbePortNames, func(o *Objects, _ *Code) {
			container(o, "greeter", "greeter").LivenessProbe.HTTPGet.Port = intstr.FromString("health")
		}},
		{"a gRPC readiness probe on the sidecar's port", checkProbes, func(o *Objects, _ *Code) {
			container(o, "greeter", "greeter").ReadinessProbe.GRPC.Port = 8081
		}},
		{"a readiness probe on a path the web does not serve", checkProbes, func(o *Objects, _ *Code) {
			container(o, "web", "web").ReadinessProbe.HTTPGet.Path = "/ready"
		}},
		{"a greeter Service port the static selector does not dial", checkSelectorPort, func(o *Objects, _ *Code) {
			service(o, "greeter").Spec.Ports[0].Port = 80
		}},
		{"no Service of the greeter's name", checkSelectorPort, func(o *Objects, _ *Code) {
			service(o, "greeter").Name = "greeter-svc"
		}},
		{"a greeter Service with a cluster IP", checkSelectorPort, func(o *Objects, _ *Code) {
			service(o, "greeter").Spec.ClusterIP = ""
		}},
		{"a Deployment that stays on a lost node for the default 300 s", checkLostNodeTolerations, func(o *Objects, _ *Code) {
			deployment(o, "web").Spec.Template.Spec.Tolerations = nil
		}},
		{"a lost-node toleration of forever", checkLostNodeTolerations, func(o *Objects, _ *Code) {
			deployment(o, "greeter").Spec.Template.Spec.Tolerations[0].TolerationSeconds = nil
		}},
		{"a service the caller's policies forget", checkPolicyPaths, func(o *Objects, _ *Code) {
			o.NetworkPolicies = slices.DeleteFunc(o.NetworkPolicies, func(p networkingv1.NetworkPolicy) bool { return p.Name == "web-to-greeter" })
		}},
		{"a service whose ingress admits the wrong caller", checkPolicyPaths, func(o *Objects, _ *Code) {
			for i := range o.NetworkPolicies {
				if o.NetworkPolicies[i].Name == "greeter-ingress" {
					o.NetworkPolicies[i].Spec.Ingress[0].From[0].PodSelector.MatchLabels["app.kubernetes.io/name"] = "loadgen"
				}
			}
		}},
		{"a container with a memory limit its binary is not told", checkMemoryLimit, func(o *Objects, _ *Code) {
			c := container(o, "greeter", "health")
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "MICRO_MEMORY_LIMIT" })
		}},
		{"a memory limit from another container", checkMemoryLimit, func(o *Objects, _ *Code) {
			env(container(o, "greeter", "health"), "MICRO_MEMORY_LIMIT").ValueFrom.ResourceFieldRef.ContainerName = "greeter"
		}},
		{"two replicas and no PodDisruptionBudget", checkDisruptionBudgets, func(o *Objects, _ *Code) {
			o.Disruptions = slices.DeleteFunc(o.Disruptions, func(p policyv1.PodDisruptionBudget) bool { return p.Name == "web" })
		}},
		{"a PodDisruptionBudget that keeps none", checkDisruptionBudgets, func(o *Objects, _ *Code) {
			for i := range o.Disruptions {
				o.Disruptions[i].Spec.MinAvailable = ptr.To(intstr.FromInt32(0))
			}
		}},
		{"an image skaffold does not build", checkImages, func(o *Objects, _ *Code) {
			container(o, "web", "web").Image = "nginx"
		}},
		{"an artifact no container uses", checkImages, func(_ *Objects, c *Code) {
			c.Images = append(slices.Clone(c.Images), "unused")
		}},
		{"no readiness probe", checkHardening, func(o *Objects, _ *Code) {
			container(o, "web", "web").ReadinessProbe = nil
		}},
		{"a bare TCP readiness probe", checkHardening, func(o *Objects, _ *Code) {
			container(o, "web", "web").ReadinessProbe.ProbeHandler = corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}}
		}},
		{"no CPU limit on a helper", checkHardening, func(o *Objects, _ *Code) {
			delete(container(o, "greeter", "health").Resources.Limits, corev1.ResourceCPU)
		}},
		{"a CPU limit on a server", checkHardening, func(o *Objects, _ *Code) {
			container(o, "web", "web").Resources.Limits[corev1.ResourceCPU] = resource.MustParse("500m")
		}},
		{"a writable root filesystem", checkHardening, func(o *Objects, _ *Code) {
			container(o, "web", "web").SecurityContext.ReadOnlyRootFilesystem = ptr.To(false)
		}},
		{"a capability added back", checkHardening, func(o *Objects, _ *Code) {
			container(o, "greeter", "greeter").SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		}},
		{"a grace period shorter than the graceful stop", checkGracePeriod, func(o *Objects, _ *Code) {
			deployment(o, "web").Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](10)
		}},
		{"a token mounted", checkServiceAccounts, func(o *Objects, _ *Code) {
			deployment(o, "web").Spec.Template.Spec.AutomountServiceAccountToken = ptr.To(true)
		}},
		{"a shared ServiceAccount", checkServiceAccounts, func(o *Objects, _ *Code) {
			deployment(o, "web").Spec.Template.Spec.ServiceAccountName = "greeter"
		}},
		{"an object without part-of", checkLabels, func(o *Objects, _ *Code) {
			for i, doc := range o.YAML {
				if bytes.Contains(doc, []byte("kind: Service\n")) {
					o.YAML[i] = bytes.Replace(doc, []byte("app.kubernetes.io/part-of: micro-on-kubernetes"), nil, 1)
					return
				}
			}
		}},
		{"a scrape annotation naming another port", checkScrapeAnnotations, func(o *Objects, _ *Code) {
			deployment(o, "greeter").Spec.Template.Annotations["prometheus.io/port"] = "8080"
		}},
		{"a metrics port the binary does not serve", checkPorts, func(o *Objects, _ *Code) {
			container(o, "web", "web").Ports[1].ContainerPort = 9100
		}},
		{"a config file outside the mount", checkConfig, func(o *Objects, _ *Code) {
			env(container(o, "web", "web"), "MICRO_CONFIG_FILE").Value = "/etc/config.json"
		}},
		{"a configuration the greeter refuses", checkConfig, func(o *Objects, _ *Code) {
			o.ConfigMaps[0].Data = map[string]string{"config.json": `{"greeter": {"greeting": "Hi"}}`}
		}},
		{"a policy that selects nothing", checkNetworkPolicies, func(o *Objects, _ *Code) {
			o.NetworkPolicies[0].Spec.PodSelector.MatchLabels = map[string]string{"app.kubernetes.io/name": "nothing"}
		}},
		{"an egress rule naming a port some of its peers do not name", checkNetworkPolicies, func(o *Objects, _ *Code) {
			for i := range o.NetworkPolicies {
				if o.NetworkPolicies[i].Name == "api" {
					delete(o.NetworkPolicies[i].Spec.Egress[0].To[0].PodSelector.MatchLabels, "app.kubernetes.io/component")
				}
			}
		}},
		{"a policy allowing a port no pod names", checkNetworkPolicies, func(o *Objects, _ *Code) {
			for i := range o.NetworkPolicies {
				if len(o.NetworkPolicies[i].Spec.Ingress) > 0 {
					o.NetworkPolicies[i].Spec.Ingress[0].Ports[0].Port = ptr.To(intstr.FromString("nope"))
					return
				}
			}
		}},
	}
	// NATS, a StatefulSet, is checked as the Deployments are (unless a
	// fork dropped the events).
	if len(good.StatefulSets) > 0 {
		cases = append(cases, []struct {
			what    string
			check   func(Objects, Code) error
			breakIt func(*Objects, *Code)
		}{
			{"NATS at another version than tools/nats-server pins", checkImages, func(o *Objects, _ *Code) {
				o.StatefulSets[0].Spec.Template.Spec.Containers[0].Image = "nats:2.10.0"
			}},
			{"NATS without its memory limit told", checkMemoryLimit, func(o *Objects, _ *Code) {
				o.StatefulSets[0].Spec.Template.Spec.Containers[0].Env = nil
			}},
			{"NATS running as root", checkHardening, func(o *Objects, _ *Code) {
				o.StatefulSets[0].Spec.Template.Spec.Containers[0].SecurityContext.RunAsNonRoot = ptr.To(false)
			}},
			{"the greeter kept from NATS", checkPolicyPaths, func(o *Objects, _ *Code) {
				policy(o, "greeter-to-nats").Spec.Egress[0].Ports[0].Port = ptr.To(intstr.FromString("monitor"))
			}},
		}...)
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			if !registered(c.check) {
				t.Fatal("the check is not in Checks, so nothing runs it")
			}
			if err := c.check(good, goodCode); err != nil {
				t.Fatalf("the check fails on the real manifests: %v", err)
			}
			objs, cd := clone(good), goodCode
			c.breakIt(&objs, &cd)
			err := c.check(objs, cd)
			if err == nil {
				t.Fatal("the check passed the broken manifests")
			}
			t.Logf("caught: %v", err)
		})
	}
}

func TestConduitCheckCatchesOtherChanges(t *testing.T) {
	s := loadSkaffold(t)
	base := render(t, s, nil)
	meshed := clone(render(t, s, []string{"conduit"}))
	changed := false
	for i, doc := range meshed.YAML {
		if !changed && bytes.Contains(doc, []byte("replicas: 2")) {
			meshed.YAML[i], changed = bytes.Replace(doc, []byte("replicas: 2"), []byte("replicas: 3"), 1), true
		}
	}
	if !changed {
		t.Fatal("no Deployment with replicas: 2 to change")
	}
	if _, err := OnlyPodAnnotationsDiffer(base, meshed); err == nil {
		t.Fatal("a component that also changes replicas passed")
	}
}

func TestUnknownFieldsAndKindsAreRejected(t *testing.T) {
	cases := map[string]string{
		"a misspelt field":        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  replica: 1\n",
		"a field of another kind": "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  containers: []\n",
		"a kind no check knows":   "apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n",
	}
	for what, doc := range cases {
		var o Objects
		if err := o.add([]byte(doc)); err == nil {
			t.Errorf("%s was accepted", what)
		}
	}
}

func TestProfilesMayNotPatch(t *testing.T) {
	s := loadSkaffold(t)
	if _, err := s.KustomizePaths([]string{"no-such-profile"}); err == nil {
		t.Error("an unknown profile was accepted")
	}
	s.Configs[0].Profiles = append(s.Configs[0].Profiles, s.Configs[0].Profiles[0])
	p := &s.Configs[0].Profiles[len(s.Configs[0].Profiles)-1]
	p.Name = "patching"
	p.Patches = append(p.Patches, struct {
		Op   string `json:"op"`
		Path string `json:"path"`
	}{"replace", "/manifests/kustomize/paths/0"})
	if _, err := s.KustomizePaths([]string{"patching"}); err == nil || !strings.Contains(err.Error(), "patches") {
		t.Errorf("a profile patching by index was accepted: %v", err)
	}
}

func registered(check func(Objects, Code) error) bool {
	for _, c := range Checks {
		if reflect.ValueOf(c.Run).Pointer() == reflect.ValueOf(check).Pointer() {
			return true
		}
	}
	return false
}

func clone(o Objects) Objects {
	var c Objects
	for _, d := range o.Deployments {
		c.Deployments = append(c.Deployments, *d.DeepCopy())
	}
	for _, s := range o.Services {
		c.Services = append(c.Services, *s.DeepCopy())
	}
	for _, sa := range o.ServiceAccounts {
		c.ServiceAccounts = append(c.ServiceAccounts, *sa.DeepCopy())
	}
	for _, np := range o.NetworkPolicies {
		c.NetworkPolicies = append(c.NetworkPolicies, *np.DeepCopy())
	}
	for _, cm := range o.ConfigMaps {
		c.ConfigMaps = append(c.ConfigMaps, *cm.DeepCopy())
	}
	for _, pdb := range o.Disruptions {
		c.Disruptions = append(c.Disruptions, *pdb.DeepCopy())
	}
	for _, ss := range o.StatefulSets {
		c.StatefulSets = append(c.StatefulSets, *ss.DeepCopy())
	}
	c.YAML = slices.Clone(o.YAML)
	return c
}

func deployment(o *Objects, name string) *appsv1.Deployment {
	for i := range o.Deployments {
		if o.Deployments[i].Name == name {
			return &o.Deployments[i]
		}
	}
	panic("no Deployment " + name)
}

func container(o *Objects, deploymentName, name string) *corev1.Container {
	d := deployment(o, deploymentName)
	for i := range d.Spec.Template.Spec.Containers {
		if d.Spec.Template.Spec.Containers[i].Name == name {
			return &d.Spec.Template.Spec.Containers[i]
		}
	}
	panic("no container " + name)
}

func env(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	panic("no variable " + name + " in " + c.Name)
}

func service(o *Objects, name string) *corev1.Service {
	for i := range o.Services {
		if o.Services[i].Name == name {
			return &o.Services[i]
		}
	}
	panic("no Service " + name)
}

func policy(o *Objects, name string) *networkingv1.NetworkPolicy {
	for i := range o.NetworkPolicies {
		if o.NetworkPolicies[i].Name == name {
			return &o.NetworkPolicies[i]
		}
	}
	panic("no NetworkPolicy " + name)
}
