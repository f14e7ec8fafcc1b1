package kube

import (
	"strconv"
)

// kubeRouterHealthPort is kube-router's health endpoint, on the namespace's
// loopback.
const kubeRouterHealthPort = 20244

// StartPolicyEnforcer starts kube-router's network-policy controller, which
// enforces the cluster's NetworkPolicies on the node's pods from then on
// (with iptables and ipset, in the namespace: its rules go with it). No
// plugin enforces them before: a test shows the difference. Policies reach
// a new pod a moment after it starts; callers wait for a known-denied path
// to be refused, not for a time.
func (c *Cluster) StartPolicyEnforcer() error {
	return c.start("kube-router", c.Host.Bins.KubeRouter,
		"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
		"--enable-ipv6=false",
		"--kubeconfig="+c.Kubeconfig,
		"--hostname-override="+NodeName,
		"--service-cluster-ip-range="+ServiceCIDR,
		"--health-port="+strconv.Itoa(kubeRouterHealthPort),
		"--metrics-port=0",
	)
}
