// Package controlplane runs a real Kubernetes control plane on loopback for
// tests: etcd (embedded), kube-apiserver, kube-controller-manager,
// kube-scheduler, and kwok simulating one node. Deployments, ReplicaSets,
// scheduling, Endpoints and admission are the real thing; only the kubelet
// is simulated: kwok marks scheduled pods Running and Ready, and no
// container runs.
package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// NodeName is the one simulated node.
const NodeName = "kwok-node"

// ReadyTimeout bounds the start: the API server is ready in seconds.
const ReadyTimeout = 2 * time.Minute

// Binaries are the built components.
type Binaries struct {
	APIServer, ControllerManager, Scheduler, Kwok string
	// KwokStages are the kwok Stage manifests that make nodes and pods
	// become ready.
	KwokStages []string
}

// ControlPlane is a running control plane.
type ControlPlane struct {
	// Kubeconfig is the path of a kubeconfig with cluster-admin rights.
	Kubeconfig string
	// Config and Client reach the API server as cluster admin.
	Config *rest.Config
	Client kubernetes.Interface

	dir   string
	etcd  *embed.Etcd
	procs []*process
}

// Start starts the control plane with its files and logs in dir and waits
// until the node is Ready. On error everything started is stopped.
func Start(ctx context.Context, bins Binaries, dir string) (cp *ControlPlane, err error) {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	cp = &ControlPlane{dir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig")}
	defer func() {
		if err != nil {
			err = errors.Join(err, cp.Stop())
			cp = nil
		}
	}()

	etcdURL, err := cp.startEtcd()
	if err != nil {
		return cp, err
	}
	if err := cp.startAPIServer(ctx, bins.APIServer, etcdURL); err != nil {
		return cp, err
	}
	if err := cp.startControllers(bins); err != nil {
		return cp, err
	}
	if err := cp.addNode(ctx); err != nil {
		return cp, err
	}
	return cp, nil
}

// Stop stops every component, last started first, and etcd last.
func (cp *ControlPlane) Stop() error {
	var errs []error
	for i := len(cp.procs) - 1; i >= 0; i-- {
		errs = append(errs, cp.procs[i].stop())
	}
	cp.procs = nil
	if cp.etcd != nil {
		cp.etcd.Close()
		cp.etcd = nil
	}
	return errors.Join(errs...)
}

// Pids are the processes of the components (etcd runs inside the caller).
func (cp *ControlPlane) Pids() []int {
	var pids []int
	for _, p := range cp.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return pids
}

// Logs returns the end of every component's log, for a failing test.
func (cp *ControlPlane) Logs() string {
	var s string
	for _, p := range cp.procs {
		s += fmt.Sprintf("--- %s (%s)\n%s\n", p.name, p.log, tail(p.log, 15))
	}
	return s
}

func (cp *ControlPlane) startEtcd() (string, error) {
	client, err := freePort()
	if err != nil {
		return "", err
	}
	peer, err := freePort()
	if err != nil {
		return "", err
	}
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(cp.dir, "etcd")
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(cp.dir, "etcd.log")}
	clientURL := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(client)}
	peerURL := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(peer)}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{clientURL}, []url.URL{clientURL}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peerURL}, []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return "", fmt.Errorf("start etcd: %w", err)
	}
	cp.etcd = e
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(time.Minute):
		return "", errors.New("etcd was not ready within a minute")
	}
	return clientURL.String(), nil
}

func (cp *ControlPlane) startAPIServer(ctx context.Context, bin, etcdURL string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	token, err := cp.writeCredentials()
	if err != nil {
		return err
	}
	p, err := start(cp.dir, "kube-apiserver", bin,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		// A loopback advertise address is refused unless the endpoint
		// reconciler is off.
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+filepath.Join(cp.dir, "certs"),
		"--token-auth-file="+filepath.Join(cp.dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-key-file="+filepath.Join(cp.dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(cp.dir, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		// Addresses are only allocated: no traffic is sent to them.
		"--service-cluster-ip-range=10.96.0.0/16",
		// No kubelet runs to mount service account tokens.
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
	)
	if err != nil {
		return err
	}
	cp.procs = append(cp.procs, p)

	server := "https://127.0.0.1:" + strconv.Itoa(port)
	if err := writeKubeconfig(cp.Kubeconfig, server, token); err != nil {
		return err
	}
	if cp.Config, err = clientcmd.BuildConfigFromFlags("", cp.Kubeconfig); err != nil {
		return fmt.Errorf("read the kubeconfig: %w", err)
	}
	if cp.Client, err = kubernetes.NewForConfig(cp.Config); err != nil {
		return fmt.Errorf("make a client: %w", err)
	}
	return poll(ctx, "the API server to be ready", cp.procs, func(ctx context.Context) error {
		return cp.Client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
	})
}

func (cp *ControlPlane) startControllers(bins Binaries) error {
	kwokConfig := filepath.Join(cp.dir, "kwok.yaml")
	if err := concat(kwokConfig, bins.KwokStages); err != nil {
		return err
	}
	for _, c := range []struct {
		name, bin string
		args      []string
	}{
		{"kube-controller-manager", bins.ControllerManager, []string{
			"--leader-elect=false",
			"--service-account-private-key-file=" + filepath.Join(cp.dir, "sa.key"),
			"--use-service-account-credentials=false",
			// Pod addresses come from kwok, not from node CIDRs.
			"--controllers=*,-node-ipam-controller",
		}},
		{"kube-scheduler", bins.Scheduler, []string{"--leader-elect=false"}},
		{"kwok", bins.Kwok, []string{
			"--config=" + kwokConfig,
			"--manage-all-nodes=false",
			"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
			"--manage-nodes-with-label-selector=",
		}},
	} {
		args := append([]string{"--kubeconfig=" + cp.Kubeconfig}, c.args...)
		if c.name != "kwok" {
			// Serve nothing: the health endpoints are not needed, and the
			// default ports are on every interface.
			args = append(args, "--secure-port=0")
		}
		p, err := start(cp.dir, c.name, c.bin, args...)
		if err != nil {
			return err
		}
		cp.procs = append(cp.procs, p)
	}
	return nil
}

// addNode registers the simulated node and waits until kwok reports it
// Ready.
func (cp *ControlPlane) addNode(ctx context.Context) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        NodeName,
		Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
		Labels:      map[string]string{"kubernetes.io/hostname": NodeName, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "type": "kwok"},
	}}
	if _, err := cp.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create the node: %w", err)
	}
	return poll(ctx, "the node to be Ready", cp.procs, func(ctx context.Context) error {
		n, err := cp.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("node %s is not Ready", NodeName)
	})
}

// writeCredentials writes the admin's token file and the service account
// signing key pair, and returns the token.
func (cp *ControlPlane) writeCredentials() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make a token: %w", err)
	}
	token := hex.EncodeToString(b)
	if err := os.WriteFile(filepath.Join(cp.dir, "tokens.csv"), []byte(token+",admin,admin,system:masters\n"), 0o600); err != nil {
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
		if err := os.WriteFile(filepath.Join(cp.dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
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

// concat writes files one after another as a multi-document YAML file.
func concat(path string, files []string) error {
	var out []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read %s: %w", f, err)
		}
		out = append(append(out, "---\n"...), b...)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
