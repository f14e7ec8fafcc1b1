package deploy

import (
	"fmt"
	"path/filepath"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Objects are rendered manifests, each decoded into its Kubernetes type.
type Objects struct {
	Deployments     []appsv1.Deployment
	StatefulSets    []appsv1.StatefulSet
	Services        []corev1.Service
	ServiceAccounts []corev1.ServiceAccount
	NetworkPolicies []networkingv1.NetworkPolicy
	ConfigMaps      []corev1.ConfigMap
	Disruptions     []policyv1.PodDisruptionBudget
	// YAML is every object as rendered, in order.
	YAML [][]byte
}

// Workloads are the Deployments and the StatefulSets, each as a
// Deployment: the checks read what the two kinds share (name, replicas,
// selector and pod template).
func (o Objects) Workloads() []appsv1.Deployment {
	ws := slices.Clone(o.Deployments)
	for _, s := range o.StatefulSets {
		ws = append(ws, appsv1.Deployment{
			ObjectMeta: s.ObjectMeta,
			Spec:       appsv1.DeploymentSpec{Replicas: s.Spec.Replicas, Selector: s.Spec.Selector, Template: s.Spec.Template},
		})
	}
	return ws
}

// Count is how many objects there are.
func (o Objects) Count() int { return len(o.YAML) }

// Render builds each kustomize folder (relative to root) and decodes every
// object strictly: a field that Kubernetes 1.37 does not know is an error.
func Render(root string, paths []string) (Objects, error) {
	var objs Objects
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	for _, p := range paths {
		resources, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(root, p))
		if err != nil {
			return Objects{}, fmt.Errorf("kustomize build %s: %w", p, err)
		}
		for _, r := range resources.Resources() {
			doc, err := r.AsYAML()
			if err != nil {
				return Objects{}, fmt.Errorf("%s: %s: %w", p, r.CurId(), err)
			}
			if err := objs.add(doc); err != nil {
				return Objects{}, fmt.Errorf("%s: %s: %w", p, r.CurId(), err)
			}
		}
	}
	return objs, nil
}

// add decodes one object into the type its apiVersion and kind name.
func (o *Objects) add(doc []byte) error {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return err
	}
	var err error
	switch meta.APIVersion + "/" + meta.Kind {
	case "apps/v1/Deployment":
		o.Deployments, err = decodeInto(doc, o.Deployments)
	case "apps/v1/StatefulSet":
		o.StatefulSets, err = decodeInto(doc, o.StatefulSets)
	case "v1/Service":
		o.Services, err = decodeInto(doc, o.Services)
	case "v1/ServiceAccount":
		o.ServiceAccounts, err = decodeInto(doc, o.ServiceAccounts)
	case "v1/ConfigMap":
		o.ConfigMaps, err = decodeInto(doc, o.ConfigMaps)
	case "networking.k8s.io/v1/NetworkPolicy":
		o.NetworkPolicies, err = decodeInto(doc, o.NetworkPolicies)
	case "policy/v1/PodDisruptionBudget":
		o.Disruptions, err = decodeInto(doc, o.Disruptions)
	default:
		return fmt.Errorf("%s %s: no checks know this kind yet; add it to deploy.Objects", meta.APIVersion, meta.Kind)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", meta.Kind, err)
	}
	o.YAML = append(o.YAML, doc)
	return nil
}

func decodeInto[T any](doc []byte, list []T) ([]T, error) {
	var v T
	if err := yaml.UnmarshalStrict(doc, &v); err != nil {
		return list, err
	}
	return append(list, v), nil
}
