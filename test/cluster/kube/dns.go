package kube

import (
	"context"
	"fmt"
	"net"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// The cluster DNS is CoreDNS as most clusters run it: a Deployment of two in
// kube-system labelled k8s-app=kube-dns, on two nodes when it can be, with a
// PodDisruptionBudget that keeps one while a node is drained, behind the
// Service kube-dns, which is what the application's NetworkPolicies let its
// pods ask.
const (
	DNSServiceIP = "10.96.0.10"
	dnsImage     = "coredns:1"
	dnsNamespace = "kube-system"
)

// DNSAddress is the cluster DNS: what every pod's resolv.conf names.
var DNSAddress = net.JoinHostPort(DNSServiceIP, "53")

// Resolver asks the cluster DNS, as pods do.
func Resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, DNSAddress)
	}}
}

// corefile answers the cluster's names from the API server (in-cluster,
// with the pod's ServiceAccount) and forwards nothing: nothing may leave. As
// clusters run it (kubeadm's Corefile): ready once its names are loaded, and
// still answering for 5 s after SIGTERM while its endpoint is removed, so
// that a drain moves it without a lookup refused.
const corefile = `.:53 {
    errors
    health :8080 {
        lameduck 5s
    }
    ready :8181
    cache 30
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
}
`

// startDNS pushes CoreDNS's image and deploys it with the objects it needs,
// then waits until the cluster's names resolve.
func (c *Cluster) startDNS(ctx context.Context) error {
	bin, err := os.ReadFile(c.Host.Bins.CoreDNS)
	if err != nil {
		return err
	}
	if err := c.pushBinary(ctx, dnsImage, "coredns", bin, "0"); err != nil {
		return err
	}
	labels := map[string]string{"k8s-app": "kube-dns"}
	objects := []func() error{
		func() error {
			_, err := c.Client.CoreV1().ServiceAccounts(dnsNamespace).Create(ctx, &corev1.ServiceAccount{
				ObjectMeta: metav1.ObjectMeta{Name: "coredns"},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
				ObjectMeta: metav1.ObjectMeta{Name: "system:coredns"},
				Rules: []rbacv1.PolicyRule{
					{APIGroups: []string{""}, Resources: []string{"services", "namespaces"}, Verbs: []string{"list", "watch"}},
					{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
				},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "system:coredns"},
				RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:coredns"},
				Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "coredns", Namespace: dnsNamespace}},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.CoreV1().ConfigMaps(dnsNamespace).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: "coredns"},
				Data:       map[string]string{"Corefile": corefile},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.AppsV1().Deployments(dnsNamespace).Create(ctx, &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "coredns", Labels: labels},
				Spec: appsv1.DeploymentSpec{
					Replicas: ptr.To[int32](2),
					Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec: corev1.PodSpec{
							ServiceAccountName: "coredns",
							DNSPolicy:          corev1.DNSDefault,
							Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
								PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
									Weight: 100,
									PodAffinityTerm: corev1.PodAffinityTerm{
										LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
										TopologyKey:   corev1.LabelHostname,
									},
								}},
							}},
							Containers: []corev1.Container{{
								Name:  "coredns",
								Image: c.Registry + "/" + dnsImage,
								Args:  []string{"-conf", "/etc/coredns/Corefile"},
								Ports: []corev1.ContainerPort{
									{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
									{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
								},
								VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/coredns", ReadOnly: true}},
								ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
									HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8181)},
								}, PeriodSeconds: 2},
								LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
									HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(8080)},
								}, PeriodSeconds: 10},
							}},
							Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{
								ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "coredns"}},
							}}},
						},
					},
				},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.PolicyV1().PodDisruptionBudgets(dnsNamespace).Create(ctx, &policyv1.PodDisruptionBudget{
				ObjectMeta: metav1.ObjectMeta{Name: "coredns"},
				Spec: policyv1.PodDisruptionBudgetSpec{
					MaxUnavailable: ptr.To(intstr.FromInt32(1)),
					Selector:       &metav1.LabelSelector{MatchLabels: labels},
				},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.Client.CoreV1().Services(dnsNamespace).Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Labels: labels},
				Spec: corev1.ServiceSpec{
					ClusterIP: DNSServiceIP,
					Selector:  labels,
					Ports: []corev1.ServicePort{
						{Name: "dns", Port: 53, TargetPort: intstr.FromInt32(53), Protocol: corev1.ProtocolUDP},
						{Name: "dns-tcp", Port: 53, TargetPort: intstr.FromInt32(53), Protocol: corev1.ProtocolTCP},
					},
				},
			}, metav1.CreateOptions{})
			return err
		},
	}
	for _, create := range objects {
		if err := create(); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("deploy the cluster DNS: %w", err)
		}
	}
	return poll(ctx, "the cluster DNS to answer", c.procs, func(ctx context.Context) error {
		_, err := Resolver().LookupHost(ctx, "kubernetes.default.svc.cluster.local")
		return err
	})
}
