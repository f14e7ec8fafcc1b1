// Package kube runs a real Kubernetes cluster of three nodes for tests, built
// from source: etcd (embedded), kube-apiserver, kube-controller-manager and
// kube-scheduler; on each node containerd with runc, the CNI bridge, the
// kubelet and kube-proxy; CoreDNS; an image registry that skaffold pushes
// to and the nodes pull from; and volumes for the claims that ask one. Pods run, probes are sent, Services carry
// packets. All of it lives in network, mount and PID namespaces of its own
// (see Main): nothing reaches the host's network, files or processes.
package kube

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ReadyTimeout bounds the start: measured, the nodes are Ready in seconds.
const ReadyTimeout = 3 * time.Minute

// The control plane's ports, on the namespace's own loopback (and, for the
// API server, APIServerIP): fixed, as nothing else listens there.
const (
	apiServerPort = 6443
	etcdPort      = 2379
	etcdPeerPort  = 2380
)

// Cluster is a running cluster.
type Cluster struct {
	// Kubeconfig is the path of a kubeconfig with cluster-admin rights;
	// Config and Client reach the API server with them.
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
	// Registry is the image registry's host:port, the same for skaffold's
	// pushes and the nodes' pulls (through a mirror: see startContainerd).
	Registry string
	// Host is what the host prepared: the binaries, the cluster's folder.
	Host Host

	etcd     *embed.Etcd
	registry *http.Server
	mu       sync.Mutex // procs: a test may start one (StartPolicyEnforcer)
	procs    []*process
	nodes    []*node
	// enforcing: the policy enforcer runs on every node, and on one that
	// comes back.
	enforcing bool
	// stopVolumes stops the volume provisioner (provisionVolumes).
	stopVolumes context.CancelFunc
}

// Start starts the cluster in h.Dir and waits until every node is Ready and
// its DNS answers. On error everything started is stopped.
func Start(ctx context.Context, h Host) (c *Cluster, err error) {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	c = &Cluster{Host: h, Kubeconfig: filepath.Join(h.Dir, "kubeconfig")}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Stop())
			c = nil
		}
	}()
	if err := os.MkdirAll(c.path("logs"), 0o755); err != nil {
		return c, err
	}
	etcdURL, err := c.startEtcd()
	if err != nil {
		return c, err
	}
	if err := c.startAPIServer(ctx, etcdURL); err != nil {
		return c, err
	}
	if err := c.startControllers(); err != nil {
		return c, err
	}
	volumes, stopVolumes := context.WithCancel(context.Background())
	c.stopVolumes = stopVolumes
	go c.provisionVolumes(volumes)
	if err := c.startRegistry(ctx); err != nil {
		return c, err
	}
	if err := c.startNodes(ctx); err != nil {
		return c, err
	}
	return c, nil
}

// Stop stops every process, last started first, then the registry and etcd.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopVolumes != nil {
		c.stopVolumes()
	}
	var errs []error
	for i := len(c.procs) - 1; i >= 0; i-- {
		errs = append(errs, c.procs[i].stop())
	}
	c.procs = nil
	if c.registry != nil {
		errs = append(errs, c.registry.Close())
		c.registry = nil
	}
	if c.etcd != nil {
		c.etcd.Close()
		c.etcd = nil
	}
	return errors.Join(errs...)
}

// Pids are the cluster's processes (etcd and the registry run inside the
// caller).
func (c *Cluster) Pids() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var pids []int
	for _, p := range c.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return pids
}

// Logs returns the end of every process's log, for a failing test.
func (c *Cluster) Logs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s string
	for _, p := range c.procs {
		s += fmt.Sprintf("--- %s (%s)\n%s\n", p.name, p.log, tail(p.log, 15))
	}
	return s
}

// path is a file of the cluster's folder.
func (c *Cluster) path(elem ...string) string {
	return filepath.Join(append([]string{c.Host.Dir}, elem...)...)
}

// start runs one of the cluster's processes, logging to logs/name.log. The
// PATH starts with containerd's folder: containerd finds its shim there.
func (c *Cluster) start(name, bin string, args ...string) error {
	env := append(os.Environ(), "PATH="+filepath.Dir(c.Host.Bins.Containerd)+string(os.PathListSeparator)+os.Getenv("PATH"))
	p, err := start(c.path("logs"), name, bin, env, args...)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return nil
}

func (c *Cluster) startEtcd() (string, error) {
	cfg := embed.NewConfig()
	cfg.Dir = c.path("etcd")
	// The cluster lives as long as the test process and is never started
	// again from its data: waiting for the disk on every write would only
	// tie the API's latency, and every rollout's, to the machine's disk.
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{c.path("logs", "etcd.log")}
	clientURL := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(etcdPort)}
	peerURL := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(etcdPeerPort)}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{clientURL}, []url.URL{clientURL}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peerURL}, []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return "", fmt.Errorf("start etcd: %w", err)
	}
	c.etcd = e
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(time.Minute):
		return "", errors.New("etcd was not ready within a minute")
	}
	return clientURL.String(), nil
}

func (c *Cluster) startAPIServer(ctx context.Context, etcdURL string) error {
	token, err := c.writeCredentials()
	if err != nil {
		return err
	}
	err = c.start("kube-apiserver", c.Host.Bins.APIServer,
		"--etcd-servers="+etcdURL,
		// The kubernetes Service's endpoint, and where the nodes and
		// CoreDNS find it.
		"--advertise-address="+APIServerIP,
		"--bind-address=0.0.0.0",
		"--secure-port="+strconv.Itoa(apiServerPort),
		"--cert-dir="+c.path("certs"),
		"--token-auth-file="+c.path("tokens.csv"),
		"--authorization-mode=Node,RBAC",
		"--service-account-key-file="+c.path("sa.pub"),
		"--service-account-signing-key-file="+c.path("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range="+ServiceCIDR,
		// Without it the API server looks the node's name up in DNS to
		// reach the kubelet (logs, exec), and finds nothing.
		"--kubelet-preferred-address-types=InternalIP",
		"--enable-priority-and-fairness=false",
		// Without it a stop waits for open watches (CoreDNS's, say, whose
		// pod outlives the kubelet) up to the 60 s request timeout, past
		// the 10 s a process is given: it ends them instead.
		"--shutdown-watch-termination-grace-period=2s",
	)
	if err != nil {
		return err
	}
	server := "https://127.0.0.1:" + strconv.Itoa(apiServerPort)
	if err := writeKubeconfig(c.Kubeconfig, server, token); err != nil {
		return err
	}
	nodeServer := "https://" + net.JoinHostPort(APIServerIP, strconv.Itoa(apiServerPort))
	if err := writeKubeconfig(c.nodeKubeconfig(), nodeServer, token); err != nil {
		return err
	}
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return fmt.Errorf("read the kubeconfig: %w", err)
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return fmt.Errorf("make a client: %w", err)
	}
	return poll(ctx, "the API server to be ready", c.procs, func(ctx context.Context) error {
		return c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
	})
}

// nodeKubeconfig is the kubeconfig of the nodes' processes, which reach the
// API server at APIServerIP.
func (c *Cluster) nodeKubeconfig() string { return c.path("node-kubeconfig") }

// NodeMonitorGracePeriod is how long a node's lease may go unrenewed before
// the node is lost (NotReady).
const NodeMonitorGracePeriod = 20 * time.Second

func (c *Cluster) startControllers() error {
	common := []string{"--kubeconfig=" + c.Kubeconfig, "--leader-elect=false",
		// Serve nothing: the health endpoints are not needed.
		"--secure-port=0"}
	err := c.start("kube-controller-manager", c.Host.Bins.ControllerManager, append(common,
		"--service-account-private-key-file="+c.path("sa.key"),
		"--use-service-account-credentials=false",
		// Published as kube-root-ca.crt in every namespace.
		"--root-ca-file="+c.path("certs", "apiserver.crt"),
		// Pod addresses come from the CNI plugin's own range.
		"--controllers=*,-node-ipam-controller",
		"--flex-volume-plugin-dir="+c.path("flexvolume"),
		// A node whose kubelet has not renewed its lease for this long is
		// lost (default 50 s): shorter, so that the lost-node test is short.
		// A kubelet renews every nodeLeaseSeconds/4.
		"--node-monitor-grace-period="+NodeMonitorGracePeriod.String(),
	)...)
	if err != nil {
		return err
	}
	return c.start("kube-scheduler", c.Host.Bins.Scheduler, common...)
}

// writeCredentials writes the admin's token file and the service account
// signing key pair, and returns the token.
func (c *Cluster) writeCredentials() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make a token: %w", err)
	}
	token := hex.EncodeToString(b)
	if err := os.WriteFile(c.path("tokens.csv"), []byte(token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return "", fmt.Errorf("write the token file: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", fmt.Errorf("make the service account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", fmt.Errorf("encode the service account key: %w", err)
	}
	for name, block := range map[string]*pem.Block{
		"sa.key": {Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)},
		"sa.pub": {Type: "PUBLIC KEY", Bytes: pub},
	} {
		if err := os.WriteFile(c.path(name), pem.EncodeToMemory(block), 0o600); err != nil {
			return "", fmt.Errorf("write %s: %w", name, err)
		}
	}
	return token, nil
}

// writeKubeconfig writes a kubeconfig for the admin. The API server's
// certificate is self-signed, made at its start: it is not verified.
func writeKubeconfig(path, server, token string) error {
	const context = "micro-test"
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster:
    server: %[2]s
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %[3]s
contexts:
- name: %[1]s
  context:
    cluster: %[1]s
    user: admin
current-context: %[1]s
`, context, server, token)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("write the kubeconfig: %w", err)
	}
	return nil
}
