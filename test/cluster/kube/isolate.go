package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Main runs tests against a cluster, in three stages of the same binary:
//
//  1. On the host, as root: find or build the pinned binaries, prepare what
//     the kubelet needs of the host (the mount points of its fixed paths, its
//     cgroups) and run the binary again in new network, mount and PID
//     namespaces. Afterwards, also after a failure or Ctrl-C, remove what it
//     prepared and put back the sysctls the kubelet rewrites.
//  2. As the first process of those namespaces: join the cgroup the
//     cluster's own processes share (SystemCgroup), private mounts over the
//     fixed paths, loopback and the node's address; run stage 3, reap what
//     is orphaned, pass signals on. When it exits the kernel kills whatever
//     is left in the PID namespace, and the mounts and network interfaces
//     go with their namespaces: nothing the cluster started can outlive it.
//  3. Start the cluster, call run, stop the cluster. A signal stops the
//     cluster (also during its start) and exits 130.
//
// root is the repository's root. Main returns the exit code for os.Exit.
func Main(root string, run func(ctx context.Context, c *Cluster) int) int {
	switch os.Getenv(stageEnv) {
	case "":
		return hostStage(root)
	case stageInit:
		return initStage()
	case stageTests:
		return testsStage(run)
	case stageNode:
		return nodeStage()
	}
	fmt.Fprintf(os.Stderr, "%s=%q: unknown stage\n", stageEnv, os.Getenv(stageEnv))
	return 1
}

const (
	stageEnv   = "MICRO_CLUSTER_STAGE"
	stageInit  = "init"
	stageTests = "tests"
	// stageNode holds a node's namespaces (see startHolder).
	stageNode = "node"
	// hostEnv carries the host stage's Host to the other two, as JSON.
	hostEnv = "MICRO_CLUSTER_HOST"
	// namespacesStopTimeout bounds how long the host waits for the stages inside to
	// stop after a signal before it kills the first of them, and with it
	// everything in the namespaces.
	namespacesStopTimeout = 2 * time.Minute
)

// Host is what the host stage prepared for the cluster.
type Host struct {
	// Dir holds the cluster's files; the host removes it.
	Dir string
	// Bins are the binaries to run.
	Bins Binaries
	// CgroupRoot is the run's cgroup, made in every cgroup v1 hierarchy,
	// with one for each node's kubelet under it (NodeCgroupRoot) and one for
	// the cluster's own processes (SystemCgroup).
	CgroupRoot string
	// Sysctls are the host's values of the sysctls the kubelet rewrites.
	Sysctls map[string]string
}

// kubeletSysctls are the host-wide sysctls the kubelet sets when it starts
// (setupKernelTunables in its container manager), which no namespace holds.
var kubeletSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// fixedPaths are where the kubelet, containerd, the CNI plugins and iptables
// write whatever their configuration says: device-plugin and pod-resources
// sockets, container log links, the shims' sockets, CNI result caches, lock
// files. Stage 2 mounts a tmpfs of its own over each, so nothing reaches the
// host's files; the host creates a missing mount point and removes it after.
var fixedPaths = []string{"/run", "/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni"}

// The cluster's network: the control plane's address (the first node's too,
// on the bridge that joins the nodes), the pods' range (each node's CNI
// bridge gives addresses from a /24 of it), and the Services' range, which
// kube-proxy translates on every node.
const (
	APIServerIP = "10.200.0.1"
	PodCIDR     = "10.88.0.0/16"
	ServiceCIDR = "10.96.0.0/16"
)

func hostStage(root string) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "the cluster tier needs root: it runs containerd, the kubelet and kube-proxy in network, "+
			"mount and PID namespaces of its own, and gives the kubelet cgroups. Run it as root: sudo make test-cluster")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	bins, err := Build(ctx, root)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "building the cluster's binaries:", err)
		return 1
	}
	h, undo, err := prepareHost(bins)
	defer func() {
		if err := undo(); err != nil {
			fmt.Fprintln(os.Stderr, "restoring the host:", err)
		}
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "preparing the host:", err)
		return 1
	}
	code, err := runInside(h)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return code
}

// prepareHost saves the sysctls, makes the missing mount points and the
// cgroups. undo puts back all it did, and is returned even with an error.
func prepareHost(bins Binaries) (h Host, undo func() error, err error) {
	var created []string
	h = Host{Bins: bins, CgroupRoot: CgroupRootOf(os.Getpid()), Sysctls: Sysctls()}
	undo = func() error {
		errs := []error{removeCgroups(h.CgroupRoot), restoreSysctls(h.Sysctls)}
		for _, p := range slices.Backward(created) {
			errs = append(errs, os.Remove(p))
		}
		if h.Dir != "" {
			errs = append(errs, os.RemoveAll(h.Dir))
		}
		return errors.Join(errs...)
	}
	for _, p := range fixedPaths {
		made, err := mkdirAll(p)
		created = append(created, made...)
		if err != nil {
			return h, undo, err
		}
	}
	if err := makeCgroups(h.CgroupRoot); err != nil {
		return h, undo, err
	}
	for i := range Nodes {
		if err := makeCgroups(NodeCgroupRoot(h.CgroupRoot, NodeName(i))); err != nil {
			return h, undo, err
		}
	}
	if err := makeCgroups(SystemCgroup(h.CgroupRoot)); err != nil {
		return h, undo, err
	}
	if h.Dir, err = os.MkdirTemp("", "micro-cluster-"); err != nil {
		return h, undo, err
	}
	return h, undo, nil
}

// mkdirAll makes p and its missing parents, and returns those it made,
// parents first.
func mkdirAll(p string) ([]string, error) {
	var made []string
	for d := p; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		made = append([]string{d}, made...)
	}
	for _, d := range made {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, fmt.Errorf("make the mount point %s: %w", d, err)
		}
	}
	return made, nil
}

func restoreSysctls(saved map[string]string) error {
	var errs []error
	for name, value := range saved {
		b, err := os.ReadFile(filepath.Join("/proc/sys", name))
		if err == nil && strings.TrimSpace(string(b)) == value {
			continue
		}
		if err := os.WriteFile(filepath.Join("/proc/sys", name), []byte(value), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore the sysctl %s to %s: %w", name, value, err))
		}
	}
	return errors.Join(errs...)
}

// runInside runs stage 2 in new namespaces and returns its exit code. A
// signal is passed on; if the stages inside have not stopped namespacesStopTimeout
// after it, the first of them is killed, and the kernel kills the rest.
func runInside(h Host) (int, error) {
	data, err := json.Marshal(h)
	if err != nil {
		return 0, err
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = append(FreshEnv(), stageEnv+"="+stageInit, hostEnv+"="+string(data))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID,
		Pdeathsig:  syscall.SIGKILL,
	}
	// SIGQUIT too: go test sends it to a test binary past its -timeout,
	// and the host must still be put back.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(signals)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start the cluster's namespaces: %w", err)
	}
	done := make(chan struct{})
	var once sync.Once
	go func() {
		select {
		case s := <-signals:
			if s == syscall.SIGQUIT {
				s = os.Interrupt
			}
			_ = cmd.Process.Signal(s)
			select {
			case <-done:
			case <-time.After(namespacesStopTimeout):
				once.Do(func() {
					fmt.Fprintf(os.Stderr, "the cluster did not stop within %s: killing it\n", namespacesStopTimeout)
				})
				_ = cmd.Process.Kill()
			}
		case <-done:
		}
	}()
	err = cmd.Wait()
	close(done)
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return exit.ExitCode(), nil
	}
	return 0, err
}

// initStage is the first process of the namespaces: it makes the mounts
// private, mounts its own /proc and a tmpfs over each fixed path, sets up the
// network, then runs the tests stage until it exits.
func initStage() int {
	h, err := hostFromEnv()
	if err == nil {
		err = joinSystemCgroup(h.CgroupRoot)
	}
	if err == nil {
		err = isolateMounts()
	}
	if err == nil {
		err = setUpNetwork()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "inside the cluster's namespaces:", err)
		return 1
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	env := append(FreshEnv(), stageEnv+"="+stageTests, hostEnv+"="+os.Getenv(hostEnv))
	p, err := os.StartProcess("/proc/self/exe", os.Args, &os.ProcAttr{Env: env, Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start the tests:", err)
		return 1
	}
	go func() {
		for s := range signals {
			_ = p.Signal(s)
		}
	}()
	// As the first process of a PID namespace, it reaps every orphan (the
	// shims containerd starts, say), until the tests stage itself ends.
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "waiting for the tests:", err)
			return 1
		}
		if pid == p.Pid {
			if ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return ws.ExitStatus()
		}
	}
}

func hostFromEnv() (Host, error) {
	var h Host
	if err := json.Unmarshal([]byte(os.Getenv(hostEnv)), &h); err != nil {
		return h, fmt.Errorf("read %s: %w", hostEnv, err)
	}
	return h, nil
}

// isolateMounts stops mounts from propagating to the host, gives the PID
// namespace its own /proc, and hides each fixed path behind a tmpfs.
func isolateMounts() error {
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make the mounts private: %w", err)
	}
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	for _, p := range fixedPaths {
		if err := syscall.Mount("tmpfs", p, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755"); err != nil {
			return fmt.Errorf("mount a tmpfs on %s: %w", p, err)
		}
	}
	return nil
}

// setUpNetwork brings up loopback and the bridge that joins the nodes, with
// the control plane's address on it (nothing else: nothing leaves), lets
// packets pass between the bridges, and routes the Services' range to
// loopback so that the first node, and the tests, reach ClusterIPs through
// its kube-proxy.
func setUpNetwork() error {
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", nodesBridge, "type", "bridge"},
		{"addr", "add", APIServerIP + nodesBits, "dev", nodesBridge},
		{"link", "set", nodesBridge, "up"},
		{"route", "add", ServiceCIDR, "dev", "lo", "src", APIServerIP},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
}

// testsStage starts the cluster, runs the tests, and stops the cluster; a
// signal stops it at any point and exits 130.
func testsStage(run func(ctx context.Context, c *Cluster) int) int {
	h, err := hostFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var (
		mu      sync.Mutex
		cluster *Cluster
		stopped bool
	)
	stopCluster := func() {
		mu.Lock()
		defer mu.Unlock()
		if cluster != nil && !stopped {
			stopped = true
			if err := cluster.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "stopping the cluster:", err)
			}
		}
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	starting := make(chan struct{})
	// Set before the context is cancelled: run may return (0) as soon as
	// it is, and the exit code must still say the run was interrupted.
	var interrupted atomic.Bool
	go func() {
		s := <-signals
		fmt.Fprintf(os.Stderr, "%v: stopping the cluster\n", s)
		interrupted.Store(true)
		cancel() // a start in progress gives up
		<-starting
		stopCluster()
		os.Exit(130)
	}()

	c, err := Start(ctx, h)
	mu.Lock()
	cluster = c
	mu.Unlock()
	close(starting)
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the cluster:", err)
	} else {
		code = run(ctx, c)
	}
	stopCluster()
	if interrupted.Load() {
		return 130
	}
	return code
}

// FreshEnv is this process's environment without the stages' variables:
// what a run of the tier started from here needs to begin on its host stage.
func FreshEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, stageEnv+"=") && !strings.HasPrefix(e, hostEnv+"=") {
			env = append(env, e)
		}
	}
	return env
}

// CgroupRootOf is the kubelet's cgroupRoot of the run whose host stage is
// the process pid.
func CgroupRootOf(pid int) string { return "/micro-cluster-" + strconv.Itoa(pid) }

// CgroupDirs are the directories of a cgroup in every hierarchy.
func CgroupDirs(cgroup string) []string {
	hierarchies, _ := cgroupHierarchies()
	var dirs []string
	for _, h := range hierarchies {
		dirs = append(dirs, filepath.Join(h, cgroup))
	}
	return dirs
}

// Sysctls are the current values of the sysctls the kubelet rewrites.
func Sysctls() map[string]string {
	values := map[string]string{}
	for _, name := range kubeletSysctls {
		b, err := os.ReadFile(filepath.Join("/proc/sys", name))
		values[name] = strings.TrimSpace(string(b))
		if err != nil {
			values[name] = err.Error()
		}
	}
	return values
}
