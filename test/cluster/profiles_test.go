package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/micro/kubernetes/test/cluster/skaffold"
)

// rolloutTimeout bounds how long a profile may take to become Available:
// kwok makes pods Ready at once, so this is seconds in practice.
const rolloutTimeout = time.Minute

// fieldManager names this test as the owner of what it applies.
const fieldManager = "micro-cluster-test"

// TestProfiles applies what skaffold renders with no profile, each profile
// alone, and all of them, each into a namespace of its own, with server-side
// apply; then checks that it rolls out and is wired.
func TestProfiles(t *testing.T) {
	f, err := skaffold.ReadFile(env.root)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]string{"base": nil, "all": f.ProfileNames()}
	for _, p := range f.ProfileNames() {
		cases[p] = []string{p}
	}
	for name, profiles := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), rolloutTimeout)
			defer cancel()
			manifests, err := env.skaffold.Render(ctx, t.TempDir(), profiles)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decode(manifests)
			if err != nil {
				t.Fatal(err)
			}
			ns := "profile-" + name
			createNamespace(t, ns)
			for _, o := range objs {
				if err := apply(ctx, ns, o); err != nil {
					t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
				}
			}
			checkRollout(ctx, t, ns, objs)
			for _, p := range profiles {
				if check, ok := profileChecks[p]; ok {
					check(ctx, t, ns, objs)
				}
			}
		})
	}
}

// profileChecks are what each profile must add in the cluster.
var profileChecks = map[string]func(context.Context, *testing.T, string, []*unstructured.Unstructured){
	// The mesh injects pods annotated for it: the annotation must be on the
	// application's pods themselves, which is where Linkerd's injector reads
	// it. (The load generator stays outside the mesh, like outside traffic.)
	"conduit": func(ctx context.Context, t *testing.T, ns string, _ []*unstructured.Unstructured) {
		base, err := env.skaffold.Render(ctx, t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decode(base)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if o.GetKind() != "Deployment" {
				continue
			}
			pods, err := env.cp.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + o.GetName()})
			if err != nil {
				t.Fatal(err)
			}
			if len(pods.Items) == 0 {
				t.Errorf("deployment %s has no pods", o.GetName())
			}
			for _, p := range pods.Items {
				if p.Annotations["linkerd.io/inject"] != "enabled" {
					t.Errorf("pod %s: annotation linkerd.io/inject = %q, want enabled", p.Name, p.Annotations["linkerd.io/inject"])
				}
			}
		}
	},
	// Every rendered NetworkPolicy was admitted and is in the cluster.
	"network-policies": func(ctx context.Context, t *testing.T, ns string, objs []*unstructured.Unstructured) {
		want := 0
		for _, o := range objs {
			if o.GetKind() == "NetworkPolicy" {
				want++
				if _, err := env.cp.Client.NetworkingV1().NetworkPolicies(ns).Get(ctx, o.GetName(), metav1.GetOptions{}); err != nil {
					t.Errorf("network policy %s: %v", o.GetName(), err)
				}
			}
		}
		if want == 0 {
			t.Error("the network-policies profile rendered no NetworkPolicy")
		}
	},
}

// checkRollout waits until every Deployment is Available and every Service
// has a ready endpoint (its selector matches the labels of ready pods), and
// reports each object that is not by the deadline, with why.
func checkRollout(ctx context.Context, t *testing.T, ns string, objs []*unstructured.Unstructured) {
	t.Helper()
	pending := map[string]func(context.Context) error{}
	for _, o := range objs {
		name := o.GetName()
		switch o.GetKind() {
		case "Deployment":
			pending["Deployment "+name] = func(ctx context.Context) error { return deploymentAvailable(ctx, ns, name) }
		case "Service":
			pending["Service "+name] = func(ctx context.Context) error { return serviceReady(ctx, ns, name) }
		}
	}
	failures := map[string]error{}
	for len(pending) > 0 {
		for what, check := range pending {
			// Each check gets its own short deadline, so the last one
			// still says why it fails after ctx has ended.
			c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			err := check(c)
			cancel()
			if err == nil {
				delete(pending, what)
				delete(failures, what)
			} else {
				failures[what] = err
			}
		}
		if len(pending) == 0 || ctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	for what, err := range failures {
		if strings.HasPrefix(what, "Deployment") {
			err = fmt.Errorf("%w\ncontrol plane:\n%s", err, env.cp.Logs())
		}
		t.Errorf("%s: %v", what, err)
	}
}

func deploymentAvailable(ctx context.Context, ns, name string) error {
	d, err := env.cp.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue &&
			d.Status.ReadyReplicas == *d.Spec.Replicas {
			return nil
		}
	}
	return fmt.Errorf("not Available: %d of %d replicas ready, conditions %v", d.Status.ReadyReplicas, *d.Spec.Replicas, d.Status.Conditions)
}

func serviceReady(ctx context.Context, ns, name string) error {
	slices, err := env.cp.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + name,
	})
	if err != nil {
		return err
	}
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				return nil
			}
		}
	}
	svc, err := env.cp.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	return fmt.Errorf("no ready endpoint: its selector %v matches no ready pod", svc.Spec.Selector)
}

// TestBrokenManifestsRejected shows that the API server is the judge: each
// fixture is a manifest a schema-less check could pass, and applying it
// must fail with the API server's reason.
func TestBrokenManifestsRejected(t *testing.T) {
	t.Parallel()
	const ns = "broken"
	createNamespace(t, ns)
	for file, want := range map[string]string{
		// A typo in a field name: strict field validation refuses it.
		"unknown-field.yaml": `.spec.template.spec.containers[name="app"].imagePullPolicyy: field not declared in schema`,
		// A selector that does not match the pod template's labels: the
		// Deployment could never own its pods.
		"selector-mismatch.yaml": "`selector` does not match template `labels`",
	} {
		t.Run(file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decode(b)
			if err != nil {
				t.Fatal(err)
			}
			err = apply(t.Context(), ns, objs[0])
			if err == nil {
				t.Fatal("the API server accepted it")
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("refused with %q, want it to say %q", err, want)
			}
			t.Logf("refused, as it should be: %v", err)
		})
	}
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

// apply applies one object into ns with server-side apply and strict field
// validation, as kubectl apply --server-side does.
func apply(ctx context.Context, ns string, o *unstructured.Unstructured) error {
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(env.cp.Client.Discovery()))
	gvk := o.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("find the resource of %s: %w", gvk, err)
	}
	dyn, err := dynamic.NewForConfig(env.cp.Config)
	if err != nil {
		return err
	}
	data, err := o.MarshalJSON()
	if err != nil {
		return err
	}
	force := true
	_, err = dyn.Resource(m.Resource).Namespace(ns).Patch(ctx, o.GetName(), types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: fieldManager, Force: &force, FieldValidation: "Strict"})
	return err
}

func createNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := env.cp.Client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}
