package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

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
		// A pod without a seccomp profile, in a namespace that enforces
		// Pod Security "restricted" (createNamespace labels every one).
		"no-seccomp.yaml": `violates PodSecurity "restricted:latest": seccompProfile`,
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

// fieldManager names this test as the owner of what it applies.
const fieldManager = "micro-cluster-test"

// apply applies one object into ns with server-side apply and strict field
// validation, as kubectl apply --server-side does.
func apply(ctx context.Context, ns string, o *unstructured.Unstructured) error {
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(env.cluster.Client.Discovery()))
	gvk := o.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("find the resource of %s: %w", gvk, err)
	}
	dyn, err := dynamic.NewForConfig(env.cluster.Config)
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
