package kube

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The node's ports, on its own network namespace.
const (
	kubeletPort   = 10250
	kubeProxyPort = 10256 // health
)

// Nodes is how many nodes the cluster has: enough for a Deployment of two
// to stand on two nodes with a third to move to while one is drained or lost.
const Nodes = 3

// NodeName is the name of node i (0-based).
func NodeName(i int) string { return "node-" + strconv.Itoa(i+1) }

// A node is one machine of the cluster: containerd, the kubelet, kube-proxy
// and, once started, kube-router. Each node has a mount namespace of its own
// (the kubelet and containerd write the same fixed paths on every node). The
// first shares the control plane's network namespace, as a control-plane node
// that also runs pods does; every other has a network namespace of its own,
// joined to the first by a veth on the bridge nodesBridge.
type node struct {
	name    string
	ip      string // its address on nodesBridge
	podCIDR string // its share of PodCIDR, given by its CNI config
	// ownNetwork: it has a network namespace of its own (all but the
	// first, which shares the control plane's).
	ownNetwork bool
	// holder is the process that holds its namespaces (the node stage);
	// every process of the node joins them with nsenter.
	holder *process
	procs  []*process
}

// nodesBridge joins the nodes, in the control plane's network namespace, on
// a /nodesBits network around APIServerIP.
const (
	nodesBridge = "nodes"
	nodesBits   = "/24"
)

// newNode is node i: its address the i-th after APIServerIP (the first
// node's is APIServerIP), its pods the (i+1)-th /24 of PodCIDR.
func newNode(i int) *node {
	ip := netip.MustParseAddr(APIServerIP).As4()
	ip[3] += byte(i)
	pods := netip.MustParsePrefix(PodCIDR).Addr().As4()
	pods[2] = byte(i + 1)
	return &node{
		name:       NodeName(i),
		ip:         netip.AddrFrom4(ip).String(),
		podCIDR:    netip.PrefixFrom(netip.AddrFrom4(pods), 24).String(),
		ownNetwork: i > 0,
	}
}

// startNodes starts every node, waits until all are Ready, then deploys the
// cluster DNS.
func (c *Cluster) startNodes(ctx context.Context) error {
	for i := range Nodes {
		c.nodes = append(c.nodes, newNode(i))
	}
	for _, n := range c.nodes {
		if err := c.startNode(ctx, n); err != nil {
			return err
		}
	}
	for _, n := range c.nodes {
		if err := poll(ctx, n.name+" to be Ready", c.procs, func(ctx context.Context) error { return c.NodeReady(ctx, n.name) }); err != nil {
			return err
		}
	}
	// Each kubelet rewrote them once, at its start: put them back now,
	// rather than leave the host so for the whole run.
	if err := restoreSysctls(c.Host.Sysctls); err != nil {
		return err
	}
	return c.startDNS(ctx)
}

// startNode starts the node's namespaces, its network, containerd, the
// kubelet and kube-proxy; the node registers itself.
func (c *Cluster) startNode(ctx context.Context, n *node) error {
	if err := c.startHolder(n); err != nil {
		return err
	}
	if err := c.connect(n); err != nil {
		return err
	}
	return c.startNodeProcesses(ctx, n)
}

// startNodeProcesses starts what runs on a node whose namespaces and network
// are up: after its first start, and when it comes back (RestartNode).
func (c *Cluster) startNodeProcesses(ctx context.Context, n *node) error {
	if err := c.startContainerd(ctx, n); err != nil {
		return err
	}
	if err := c.startKubelet(n); err != nil {
		return err
	}
	return c.startKubeProxy(n)
}

// NodeReady returns nil if the node is Ready, else why not.
func (c *Cluster) NodeReady(ctx context.Context, name string) error {
	n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("node %s is not Ready: %s", name, cond.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition yet", name)
}

// startHolder starts the node stage: a process in a new mount namespace
// (and, but for the first node, a new network namespace) that hides the
// fixed paths behind its own tmpfs and waits to be stopped.
func (c *Cluster) startHolder(n *node) error {
	flags := uintptr(syscall.CLONE_NEWNS)
	if n.ownNetwork {
		flags |= syscall.CLONE_NEWNET
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = append(FreshEnv(), stageEnv+"="+stageNode)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p, err := startCmd(c.path("logs"), n.name, cmd)
	if err != nil {
		return err
	}
	n.holder = p
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	// Its mounts are made before it reads anything: wait for its line.
	return poll(context.Background(), n.name+"'s namespaces", []*process{p}, func(context.Context) error {
		if b, _ := os.ReadFile(p.log); strings.Contains(string(b), nodeStageReady) {
			return nil
		}
		return fmt.Errorf("%s has not made its mounts", n.name)
	})
}

// nodeStageReady is the line the node stage prints once its mounts are made.
const nodeStageReady = "namespaces ready"

// nodeStage holds a node's namespaces: it hides the fixed paths behind a
// tmpfs of its own, then waits for a signal. Every process of the node
// joins its namespaces; they go when it and they have stopped.
func nodeStage() int {
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		fmt.Fprintln(os.Stderr, "make the node's mounts private:", err)
		return 1
	}
	for _, p := range fixedPaths {
		if err := syscall.Mount("tmpfs", p, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755"); err != nil {
			fmt.Fprintf(os.Stderr, "mount a tmpfs on %s: %v\n", p, err)
			return 1
		}
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	fmt.Println(nodeStageReady)
	<-signals
	return 0
}

// inNode is the command line that runs name with args in the node's
// namespaces: nsenter enters them and then executes it, so it keeps its
// process ID, process group and parent-death signal.
func (n *node) inNode(name string, args ...string) (string, []string) {
	pid := strconv.Itoa(n.holder.cmd.Process.Pid)
	return "nsenter", append([]string{"--target=" + pid, "--mount", "--net", "--", name}, args...)
}

// connect gives a node of its own network namespace an address on
// nodesBridge, routes to every other node's pods, and the routes of the
// nodes already up to its pods. The first node's network is set up by the
// init stage (setUpNetwork).
func (c *Cluster) connect(n *node) error {
	if !n.ownNetwork {
		return nil
	}
	link := "v-" + n.name
	pid := strconv.Itoa(n.holder.cmd.Process.Pid)
	cmds := [][]string{
		{"ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", pid},
		{"ip", "link", "set", link, "master", nodesBridge, "up"},
	}
	inside := [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "addr", "add", n.ip + nodesBits, "dev", "eth0"},
		{"ip", "link", "set", "eth0", "up"},
		{"ip", "route", "add", ServiceCIDR, "dev", "lo", "src", n.ip},
		// Packets between its pods and the other nodes' pass through it.
		{"sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"},
	}
	for _, other := range c.nodes {
		if other == n {
			continue
		}
		inside = append(inside, []string{"ip", "route", "add", other.podCIDR, "via", other.ip})
		if other.holder != nil {
			cmds = append(cmds, other.routeTo(n))
		}
	}
	for _, args := range inside {
		name, nargs := n.inNode(args[0], args[1:]...)
		cmds = append(cmds, append([]string{name}, nargs...))
	}
	for _, args := range cmds {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// routeTo is the command that routes to m's pods from n.
func (n *node) routeTo(m *node) []string {
	route := []string{"ip", "route", "replace", m.podCIDR, "via", m.ip}
	if !n.ownNetwork {
		return route
	}
	name, args := n.inNode(route[0], route[1:]...)
	return append([]string{name}, args...)
}

// startOnNode runs one of the node's processes in its namespaces, logging to
// logs/NODE-name.log. The PATH starts with containerd's folder: containerd
// finds its shim there.
func (c *Cluster) startOnNode(n *node, name, bin string, args ...string) error {
	env := append(os.Environ(), "PATH="+filepath.Dir(c.Host.Bins.Containerd)+string(os.PathListSeparator)+os.Getenv("PATH"))
	nsenter, nargs := n.inNode(bin, args...)
	cmd := exec.Command(nsenter, nargs...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p, err := startCmd(c.path("logs"), n.name+"-"+name, cmd)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n.procs = append(n.procs, p)
	c.procs = append(c.procs, p)
	return nil
}

// nodePath is a file of the node's folder.
func (c *Cluster) nodePath(n *node, elem ...string) string {
	return c.path(append([]string{n.name}, elem...)...)
}

// containerdSocket is containerd's API, for the kubelet.
func (c *Cluster) containerdSocket(n *node) string {
	return c.nodePath(n, "containerd", "containerd.sock")
}

// startContainerd starts containerd with runc, the CNI bridge, and the
// pause image from the registry as every pod's sandbox.
func (c *Cluster) startContainerd(ctx context.Context, n *node) error {
	if err := c.writeCNIConfig(n); err != nil {
		return err
	}
	// Pods name images localhost:5000/..., as skaffold pushes them; the
	// registry listens on the control plane's address, which every node
	// reaches: a mirror, the way kind documents a local registry.
	registryHost := fmt.Sprintf("server = \"http://%s:%d\"\n", APIServerIP, registryPort)
	// Docker Hub too: the one image the manifests take from there is in the
	// registry (dockerHubMirror), and nothing may leave.
	for _, host := range []string{c.Registry, "docker.io"} {
		if err := writeFile(c.nodePath(n, "containerd", "certs.d", host, "hosts.toml"), registryHost); err != nil {
			return err
		}
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
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = %[9]q

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
`, c.nodePath(n, "containerd", "root"), c.nodePath(n, "containerd", "state"), c.containerdSocket(n), c.nodePath(n, "containerd", "opt"),
		c.Registry+"/"+pauseImage, c.Host.Bins.CNIPlugins, c.nodePath(n, "cni", "net.d"), c.nodePath(n, "runc"),
		c.nodePath(n, "containerd", "certs.d"))
	file := c.nodePath(n, "containerd", "config.toml")
	if err := writeFile(file, config); err != nil {
		return err
	}
	if err := c.startOnNode(n, "containerd", c.Host.Bins.Containerd, "--config="+file); err != nil {
		return err
	}
	return poll(ctx, n.name+"'s containerd socket", n.procs, func(context.Context) error {
		conn, err := net.Dial("unix", c.containerdSocket(n))
		if err == nil {
			conn.Close()
		}
		return err
	})
}

// writeCNIConfig writes the node's pods' network: a bridge, the node's
// gateway, addresses from the node's share of PodCIDR, and nothing
// masqueraded (nothing may leave; pods reach each other's addresses across
// nodes through the routes connect adds).
func (c *Cluster) writeCNIConfig(n *node) error {
	return writeFile(c.nodePath(n, "cni", "net.d", "10-bridge.conflist"), fmt.Sprintf(`{
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
`, n.podCIDR, c.nodePath(n, "cni", "ipam")))
}

// nodeLeaseSeconds is the kubelet's lease: it renews it every quarter of it,
// and the node lifecycle controller calls a node lost once it has not been
// renewed for NodeMonitorGracePeriod.
const nodeLeaseSeconds = 20

func (c *Cluster) startKubelet(n *node) error {
	resolv := c.nodePath(n, "resolv.conf")
	if err := writeFile(resolv, "nameserver "+DNSServiceIP+"\n"); err != nil {
		return err
	}
	config := c.nodePath(n, "kubelet.yaml")
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
nodeLeaseDurationSeconds: %[7]d
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
`, NodeCgroupRoot(c.Host.CgroupRoot, n.name), c.containerdSocket(n), kubeletPort, DNSServiceIP, resolv,
		c.nodePath(n, "kubelet", "volume-plugins"), nodeLeaseSeconds))
	if err != nil {
		return err
	}
	return c.startOnNode(n, "kubelet", c.Host.Bins.Kubelet,
		"--config="+config,
		"--kubeconfig="+c.nodeKubeconfig(),
		"--root-dir="+c.nodePath(n, "kubelet"),
		"--cert-dir="+c.nodePath(n, "kubelet", "pki"),
		"--hostname-override="+n.name,
		"--node-ip="+n.ip,
	)
}

func (c *Cluster) startKubeProxy(n *node) error {
	config := c.nodePath(n, "kube-proxy.yaml")
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
`, c.nodeKubeconfig(), PodCIDR, n.name, kubeProxyPort))
	if err != nil {
		return err
	}
	return c.startOnNode(n, "kube-proxy", c.Host.Bins.KubeProxy, "--config="+config)
}

// node returns the node named name.
func (c *Cluster) node(name string) (*node, error) {
	i := slices.IndexFunc(c.nodes, func(n *node) bool { return n.name == name })
	if i < 0 {
		return nil, fmt.Errorf("no node is named %s", name)
	}
	return c.nodes[i], nil
}

// NodeCgroupRoot is the kubelet's cgroupRoot on the node named name: one of
// its own under the run's, as each kubelet removes the pod cgroups it does
// not know of.
func NodeCgroupRoot(root, name string) string { return root + "/" + name }

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
