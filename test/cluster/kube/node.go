package kube

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The node's ports, on its own network namespace.
const (
	kubeletPort   = 10250
	kubeProxyPort = 10256 // health
)

// startNode starts containerd, the kubelet and kube-proxy, waits until the
// node is Ready, then deploys the cluster DNS.
func (c *Cluster) startNode(ctx context.Context) error {
	if err := c.startContainerd(ctx); err != nil {
		return err
	}
	if err := c.startKubelet(); err != nil {
		return err
	}
	if err := c.startKubeProxy(); err != nil {
		return err
	}
	if err := poll(ctx, "the node to be Ready", c.procs, c.nodeReady); err != nil {
		return err
	}
	// The kubelet rewrote them once, at its start: put them back now,
	// rather than leave the host so for the whole run.
	if err := restoreSysctls(c.Host.Sysctls); err != nil {
		return err
	}
	return c.startDNS(ctx)
}

func (c *Cluster) nodeReady(ctx context.Context) error {
	n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("node %s is not Ready: %s", NodeName, cond.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition yet", NodeName)
}

// containerdSocket is containerd's API, for the kubelet.
func (c *Cluster) containerdSocket() string { return c.path("containerd", "containerd.sock") }

// startContainerd starts containerd with runc, the CNI bridge, and the
// pause image from the registry as every pod's sandbox.
func (c *Cluster) startContainerd(ctx context.Context) error {
	if err := c.writeCNIConfig(); err != nil {
		return err
	}
	config := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
# NRI is not used, and would listen on a fixed path.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = %[3]q

[plugins.'io.containerd.internal.v1.opt']
  path = %[4]q

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %[5]q

[plugins.'io.containerd.cri.v1.runtime']
  # The pods' network namespaces, under containerd's state, not /run/netns.
  netns_mounts_under_state_dir = true
  # These machines withhold CAP_SYS_RESOURCE: without this every sandbox
  # fails to start ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%[6]q]
    conf_dir = %[7]q
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "/usr/sbin/runc"
      Root = %[8]q
      SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`, c.path("containerd", "root"), c.path("containerd", "state"), c.containerdSocket(), c.path("containerd", "opt"),
		c.Registry+"/"+pauseImage, c.Host.Bins.CNIPlugins, c.path("cni", "net.d"), c.path("runc"))
	file := c.path("containerd", "config.toml")
	if err := writeFile(file, config); err != nil {
		return err
	}
	if err := c.start("containerd", c.Host.Bins.Containerd, "--config="+file); err != nil {
		return err
	}
	return poll(ctx, "containerd's socket", c.procs, func(context.Context) error {
		conn, err := net.Dial("unix", c.containerdSocket())
		if err == nil {
			conn.Close()
		}
		return err
	})
}

// writeCNIConfig writes the pods' network: a bridge, the node's gateway,
// addresses from PodCIDR, and nothing masqueraded (nothing may leave).
func (c *Cluster) writeCNIConfig() error {
	return writeFile(c.path("cni", "net.d", "10-bridge.conflist"), fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, PodCIDR, c.path("cni", "ipam")))
}

func (c *Cluster) startKubelet() error {
	resolv := c.path("resolv.conf")
	if err := writeFile(resolv, "nameserver "+DNSServiceIP+"\n"); err != nil {
		return err
	}
	config := c.path("kubelet.yaml")
	err := writeFile(config, fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# These machines mount cgroup v1 (hybrid); the kubelet refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]s
containerRuntimeEndpoint: unix://%[2]s
port: %[3]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
clusterDNS: [%[4]s]
clusterDomain: cluster.local
resolvConf: %[5]s
volumePluginDir: %[6]s
failSwapOn: false
# Images cannot be pulled again from outside: never collect them, and evict
# only when the machine is really short.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.inodesFree: 1%%
# Only the tests reach the kubelet's API, from inside the namespace.
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
`, c.Host.CgroupRoot, c.containerdSocket(), kubeletPort, DNSServiceIP, resolv, c.path("kubelet", "volume-plugins")))
	if err != nil {
		return err
	}
	return c.start("kubelet", c.Host.Bins.Kubelet,
		"--config="+config,
		"--kubeconfig="+c.Kubeconfig,
		"--root-dir="+c.path("kubelet"),
		"--cert-dir="+c.path("kubelet", "pki"),
		"--hostname-override="+NodeName,
		"--node-ip="+NodeIP,
	)
}

func (c *Cluster) startKubeProxy() error {
	config := c.path("kube-proxy.yaml")
	err := writeFile(config, fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %[1]s
mode: nftables
clusterCIDR: %[2]s
hostnameOverride: %[3]s
healthzBindAddress: 127.0.0.1:%[4]d
metricsBindAddress: 127.0.0.1:10249
# Zero: leave the conntrack sysctls alone, which are not all the namespace's.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, c.Kubeconfig, PodCIDR, NodeName, kubeProxyPort))
	if err != nil {
		return err
	}
	return c.start("kube-proxy", c.Host.Bins.KubeProxy, "--config="+config)
}

// writeFile writes content to path, making its folder.
func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
