package kube

import (
	"strconv"
)

// kubeRouterHealthPort is kube-router's health endpoint, on the node's
// loopback.
const kubeRouterHealthPort = 20244

// StartPolicyEnforcer starts kube-router's network-policy controller on
// every node, which enforces the cluster's NetworkPolicies on the node's pods
// from then on (with iptables and ipset, in the node's network namespace: its
// rules go with it). A node started again (RestartNode) starts it again. No
// plugin enforces them before: a test shows the difference. Policies reach
// a new pod a moment after it starts; callers wait for a known-denied path
// to be refused, not for a time.
func (c *Cluster) StartPolicyEnforcer() error {
	c.mu.Lock()
	c.enforcing = true
	c.mu.Unlock()
	for _, n := range c.nodes {
		if err := c.startPolicyEnforcer(n); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) startPolicyEnforcer(n *node) error {
	return c.startOnNode(n, "kube-router", c.Host.Bins.KubeRouter,
		"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
		"--enable-ipv6=false",
		"--kubeconfig="+c.nodeKubeconfig(),
		"--hostname-override="+n.name,
		"--service-cluster-ip-range="+ServiceCIDR,
		"--health-port="+strconv.Itoa(kubeRouterHealthPort),
		"--metrics-port=0",
	)
}
