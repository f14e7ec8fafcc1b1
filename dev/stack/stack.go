// Package stack builds the application's binaries and runs them together on
// loopback: NATS, the greeter, its health sidecar, the other services (the
// stats), the web frontend and the API gateway, wired as in the cluster but
// with addresses instead of Kubernetes Services. `make run`
// and the end-to-end tests both use it, so what is tested is what you run.
package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/micro/kubernetes/pkg/k8s"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

// The binaries, by name, and the package each is built from.
var packages = []target{
	{"greeter", "./services/greeter"},
	{"health", "./health"},
	{"web", "./web"},
	{"api", "./api"},
}

// ServicesDir holds a folder per go-micro service, relative to the root.
const ServicesDir = "services"

// Services are the go-micro services in ServicesDir besides the greeter
// (which the stack always runs, with its sidecar and the web frontend in
// front): each added by make new-service, sorted. They run too, each on
// ports of its own (Ports.Services).
func Services(root string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(root, ServicesDir))
	if err != nil {
		return nil, fmt.Errorf("listing the services: %w", err)
	}
	var names []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(root, ServicesDir, e.Name(), "main.go")); e.IsDir() && err == nil && e.Name() != greeterv1.ServiceName {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// StopTimeout bounds a graceful stop before processes are killed.
const StopTimeout = 15 * time.Second

// Ports are the loopback ports the processes listen on.
type Ports struct {
	Greeter, Health, Web, API int
	// NATS is the events' broker's client port and NATSMonitor its HTTP
	// monitoring (health) port; with NATS 0, no NATS runs and the services
	// run with events off (an empty MICRO_EVENTS_ADDRESS).
	NATS, NATSMonitor int
	// Prometheus metrics of the greeter, the web frontend and the gateway.
	GreeterMetrics, WebMetrics, APIMetrics int
	// Replicas are more replicas of the greeter, each with its own health
	// sidecar: the web balances its calls over all of them, as it does
	// over a headless Service's pods. They run as greeter-2, health-2, ...
	Replicas []ReplicaPorts
	// Services are the ports of the other services to run (see Services),
	// by name; a service not here does not run.
	Services map[string]ServicePorts
}

// ReplicaPorts are where one more replica of the greeter listens.
type ReplicaPorts struct{ GRPC, Metrics, Health int }

// ReplicaName is the name of the greeter's replica i (0 is the first,
// "greeter"), and of its sidecar.
func ReplicaName(i int) (greeter, sidecar string) {
	if i == 0 {
		return "greeter", "health"
	}
	n := "-" + strconv.Itoa(i+1)
	return "greeter" + n, "health" + n
}

// ServicePorts are where one more service listens: gRPC and metrics.
type ServicePorts struct{ GRPC, Metrics int }

// MetricsOffset puts a service's metrics port in the 9xxx range when its
// gRPC port is in the 8xxx range: locally as in the cluster, 8xxx serve the
// application and 9xxx serve metrics.
const MetricsOffset = 1000

// PortsFrom gives each named service a gRPC port from first on, in order,
// and its metrics port MetricsOffset above it.
func PortsFrom(first int, names []string) map[string]ServicePorts {
	ports := map[string]ServicePorts{}
	for i, name := range names {
		ports[name] = ServicePorts{GRPC: first + i, Metrics: first + i + MetricsOffset}
	}
	return ports
}

// ReplicaPorts gives replica i of the greeter (1 for the second) the
// first one's ports moved by 2*i: 8092, 8093 and 9092 for the second with
// make run's defaults, so each keeps its meaning.
func (p Ports) ReplicaPorts(i int) ReplicaPorts {
	return ReplicaPorts{GRPC: p.Greeter + 2*i, Health: p.Health + 2*i, Metrics: p.GreeterMetrics + 2*i}
}

// ServiceAddress is where a service serves gRPC: the greeter or another.
func (p Ports) ServiceAddress(name string) string {
	if name == greeterv1.ServiceName {
		return p.GreeterAddress()
	}
	return loopback(p.Services[name].GRPC)
}

// MetricsURL is where one process serves its metrics.
func (p Ports) MetricsURL(name string) string {
	port := map[string]int{"greeter": p.GreeterMetrics, "web": p.WebMetrics, "api": p.APIMetrics}[name]
	if sp, ok := p.Services[name]; ok {
		port = sp.Metrics
	}
	return "http://" + loopback(port) + "/metrics"
}

// EventsAddress is NATS's URL, the services' MICRO_EVENTS_ADDRESS; empty
// when no NATS runs.
func (p Ports) EventsAddress() string {
	if p.NATS == 0 {
		return ""
	}
	return "nats://" + loopback(p.NATS)
}

// URL is the web frontend's address.
func (p Ports) URL() string { return "http://" + loopback(p.Web) }

// APIURL is the API gateway's address.
func (p Ports) APIURL() string { return "http://" + loopback(p.API) }

// HealthURL is the sidecar's health check.
func (p Ports) HealthURL() string { return "http://" + loopback(p.Health) + "/health" }

// GreeterAddress is where the greeter serves gRPC.
func (p Ports) GreeterAddress() string { return loopback(p.Greeter) }

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// Root is the repository's root: the folder of go.work.
func Root(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOWORK").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOWORK: %w", err)
	}
	work := strings.TrimSpace(string(out))
	if work == "" || work == "off" {
		return "", errors.New("not inside the repository's Go workspace (go env GOWORK is empty)")
	}
	return filepath.Dir(work), nil
}

// Build compiles the binaries into dir, which it creates.
func Build(ctx context.Context, dir string) error {
	root, err := Root(ctx)
	if err != nil {
		return err
	}
	ts, err := targets(root)
	if err != nil {
		return err
	}
	if err := build(ctx, root, dir, ts); err != nil {
		return err
	}
	return BuildNATS(ctx, root, dir)
}

// NATSManifest deploys NATS, relative to the root: the application runs
// NATS where its manifests do, and a fork without the events deletes it
// (README, "Forking").
const NATSManifest = "deploy/base/nats.yaml"

// HasEvents says whether the application runs NATS for its events.
func HasEvents(root string) bool {
	_, err := os.Stat(filepath.Join(root, NATSManifest))
	return err == nil
}

// BuildNATS puts the NATS server that tools/nats-server pins in dir, if the
// application runs one: built from source by tools/ into its cache once per
// version, then linked.
func BuildNATS(ctx context.Context, root, dir string) error {
	if !HasEvents(root) {
		return nil
	}
	cmd := exec.CommandContext(ctx, "go", "run", ".", NATSName)
	cmd.Dir = filepath.Join(root, "tools")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("building the NATS server (tools/nats-server): %w\n%s", err, stderr.Bytes())
	}
	link := filepath.Join(dir, NATSName)
	_ = os.Remove(link)
	if err := os.Symlink(strings.TrimSpace(string(out)), link); err != nil {
		return fmt.Errorf("linking the NATS server: %w", err)
	}
	return nil
}

// A target is a binary of the stack and the package it is built from,
// relative to the root.
type target struct{ name, pkg string }

// toolkit is go-micro's micro command with pkg/k8s's defaults: built with
// the stack when its folder is there (a fork may delete it), not run.
var toolkit = target{"micro", "./micro"}

// targets are every binary of the stack: packages, each other service, and
// the toolkit.
func targets(root string) ([]target, error) {
	ts := slices.Clone(packages)
	if _, err := os.Stat(filepath.Join(root, toolkit.pkg)); err == nil {
		ts = append(ts, toolkit)
	}
	others, err := Services(root)
	if err != nil {
		return nil, err
	}
	for _, name := range others {
		ts = append(ts, target{name, "./" + ServicesDir + "/" + name})
	}
	return ts, nil
}

// build compiles these targets into dir, which it creates. -trimpath, as
// the images are built: no build depends on the folder it is in, so a copy
// of the repository builds from the same cache.
func build(ctx context.Context, root, dir string, ts []target) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	args := []string{"build", "-trimpath", "-o", abs + string(filepath.Separator)}
	for _, t := range ts {
		args = append(args, t.pkg)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Stack is the processes, running.
type Stack struct {
	Ports Ports
	dir   string
	order []string // start order; Stop goes backwards
	args  map[string][]string
	bins  map[string]string // the binary of a process not named after its own
	// ready is how each process is known to serve: an http:// URL that
	// answers 200, or an address that accepts connections.
	ready map[string]string
	// addresses pin every service to its loopback addresses, the value of
	// k8s.EnvAddresses for a caller.
	addresses string
	// tempDir is removed by Stop.
	tempDir string
	// common is every process's environment, env each one's own.
	common []string
	env    map[string][]string
	out    io.Writer
	outMu  sync.Mutex // one line at a time on out

	mu    sync.Mutex
	procs map[string]*exec.Cmd
	done  map[string]chan struct{}
	// exited receives the name of each process that ends.
	exited chan string

	// With restart on, a process that exits by itself is started again
	// after a backoff; crashes counts its quick exits in a row. Stop and
	// Restart set stopping and killed so that their own exits are not
	// taken for crashes.
	restart  bool
	stopping bool
	killed   map[*exec.Cmd]bool
	crashes  map[string]int
}

// Restart backoff, as the kubelet's CrashLoopBackOff but shorter, for one
// machine: the delay doubles with each quick exit in a row, up to the
// maximum; a process that ran for StableAfter starts over.
const (
	FirstBackoff = time.Second
	MaxBackoff   = 30 * time.Second
	StableAfter  = 10 * time.Second
)

// ConfigFile is the configuration the cluster mounts from a ConfigMap,
// relative to the repository's root.
const ConfigFile = "deploy/base/config.json"

// Options say what to run and where.
type Options struct {
	Bin        string    // the folder of the binaries (see Build)
	Ports      Ports     // where each listens
	ConfigFile string    // the configuration of them all
	Out        io.Writer // their output, a line at a time behind their name
	// Restart starts again, after a backoff, a process that exits by
	// itself, as the kubelet restarts a container; off, it stays down.
	Restart bool
	// Env is added to every process's environment, after the stack's own.
	Env []string
	// NATSDir keeps NATS's JetStream data (the events and the counts);
	// empty, a temporary folder that Stop removes.
	NATSDir string
}

// MemoryLimit is what every process is told its memory limit is (see
// k8s.SetMemoryLimit): no container bounds a process here, so this is a
// generous bound of the Go runtime's own, for a developer's machine.
const MemoryLimit = 256 << 20

// Start runs the binaries and returns once the web frontend, the gateway and
// the sidecar answer their health checks.
func Start(ctx context.Context, o Options) (*Stack, error) {
	ports := o.Ports
	s := &Stack{
		Ports: ports,
		dir:   o.Bin,
		args: map[string][]string{
			"web": serviceArgs(loopback(ports.Web), loopback(ports.WebMetrics)),
			"api": serviceArgs(loopback(ports.API), loopback(ports.APIMetrics)),
		},
		bins:    map[string]string{},
		ready:   map[string]string{"web": ports.URL() + "/health", "api": ports.APIURL() + "/health"},
		env:     map[string][]string{},
		out:     o.Out,
		procs:   map[string]*exec.Cmd{},
		done:    map[string]chan struct{}{},
		exited:  make(chan string, 64),
		restart: o.Restart,
		killed:  map[*exec.Cmd]bool{},
		crashes: map[string]int{},
	}
	s.common = append([]string{k8s.EnvConfigFile + "=" + o.ConfigFile, "MICRO_EVENTS_ADDRESS=" + ports.EventsAddress()}, o.Env...)
	if ports.NATS != 0 {
		dir := o.NATSDir
		if dir == "" {
			var err error
			if dir, err = os.MkdirTemp("", "nats-"); err != nil {
				return nil, err
			}
			s.tempDir = dir
		}
		s.args[NATSName] = NATSArgs(ports.NATS, ports.NATSMonitor, dir)
		s.ready[NATSName] = "http://" + loopback(ports.NATSMonitor) + "/healthz"
		s.order = append(s.order, NATSName)
	}
	// No DNS knows the services here: pin each to its loopback addresses.
	var pinned, sidecars []string
	replicas := append([]ReplicaPorts{{GRPC: ports.Greeter, Metrics: ports.GreeterMetrics, Health: ports.Health}}, ports.Replicas...)
	for i, r := range replicas {
		greeter, sidecar := ReplicaName(i)
		s.args[greeter] = serviceArgs(loopback(r.GRPC), loopback(r.Metrics))
		s.args[sidecar] = []string{
			"--server_name=" + greeterv1.ServiceName,
			"--server_address=" + loopback(r.GRPC),
			"--health_address=" + loopback(r.Health),
		}
		s.bins[greeter], s.bins[sidecar] = "greeter", "health"
		s.ready[greeter], s.ready[sidecar] = loopback(r.GRPC), "http://"+loopback(r.Health)+"/health"
		s.order = append(s.order, greeter)
		sidecars = append(sidecars, sidecar)
		pinned = append(pinned, greeterv1.ServiceName+"="+loopback(r.GRPC))
	}
	for _, name := range slices.Sorted(maps.Keys(ports.Services)) {
		p := ports.Services[name]
		s.args[name] = serviceArgs(loopback(p.GRPC), loopback(p.Metrics))
		s.ready[name] = loopback(p.GRPC)
		s.order = append(s.order, name)
		pinned = append(pinned, name+"="+loopback(p.GRPC))
	}
	s.order = append(append(s.order, sidecars...), "web", "api")
	s.addresses = strings.Join(pinned, ",")
	for _, caller := range []string{"web", "api"} {
		s.env[caller] = []string{k8s.EnvAddresses + "=" + s.addresses}
	}
	for _, name := range s.order {
		if err := s.start(name); err != nil {
			s.Stop()
			return nil, err
		}
		// The services connect to NATS as they start: it serves first, so
		// that the stats answer from their first request.
		if name == NATSName {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := s.waitServing(ctx, name)
			cancel()
			if err != nil {
				s.Stop()
				return nil, err
			}
		}
	}
	if err := s.waitReady(ctx, 30*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// Micro is the toolkit's binary (see toolkit) and the environment that
// finds the stack's services: run it with "call SERVICE ENDPOINT JSON".
// ok is false when the toolkit was not built.
func (s *Stack) Micro() (bin, env string, ok bool) {
	bin = filepath.Join(s.dir, toolkit.name)
	if _, err := os.Stat(bin); err != nil {
		return "", "", false
	}
	return bin, k8s.EnvAddresses + "=" + s.addresses, true
}

// NATSName is the NATS server's process, and its binary's name.
const NATSName = "nats-server"

// NATSArgs run NATS on loopback with JetStream, its data in dir, its
// health at http://127.0.0.1:monitor/healthz.
func NATSArgs(port, monitor int, dir string) []string {
	return []string{
		"--addr=127.0.0.1", "--port=" + strconv.Itoa(port), "--http_port=" + strconv.Itoa(monitor),
		"--jetstream", "--store_dir=" + dir, "--server_name=local",
	}
}

// Binary is the path of a process's binary and the environment the stack
// runs it with: to run one more replica beside it.
func (s *Stack) Binary(name string) (bin string, env []string) {
	b := s.bins[name]
	if b == "" {
		b = name
	}
	return filepath.Join(s.dir, b), append(append(append(os.Environ(),
		k8s.EnvMemoryLimit+"="+strconv.Itoa(MemoryLimit)), s.common...), s.env[name]...)
}

// serviceArgs are the flags of a go-micro service, web or gRPC, of the
// stack. The configuration file is in every process's environment
// (k8s.EnvConfigFile), as the manifests give it: a service that reads none
// has no --config_file flag.
func serviceArgs(addr, metrics string) []string {
	return []string{"--server_address=" + addr, "--metrics_address=" + metrics}
}

func (s *Stack) start(name string) error {
	bin, env := s.Binary(name)
	cmd := exec.Command(bin, s.args[name]...)
	cmd.Env = env
	width := 0
	for _, n := range s.order {
		width = max(width, len(n))
	}
	w := &prefixWriter{prefix: fmt.Sprintf("%-*s | ", width, name), out: s.out, mu: &s.outMu}
	cmd.Stdout, cmd.Stderr = w, w
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.procs[name], s.done[name] = cmd, done
	s.mu.Unlock()
	started := time.Now()
	go func() {
		err := cmd.Wait()
		w.Flush()
		close(done)
		select {
		case s.exited <- name:
		default: // nobody is listening for that many exits
		}
		s.restartLater(name, cmd, err, time.Since(started))
	}()
	return nil
}

// restartLater starts a process that exited by itself again after its
// backoff, and says so on the output.
func (s *Stack) restartLater(name string, cmd *exec.Cmd, err error, ran time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.restart || s.stopping || s.killed[cmd] {
		delete(s.killed, cmd)
		return
	}
	if ran >= StableAfter {
		s.crashes[name] = 0
	}
	delay := min(FirstBackoff<<s.crashes[name], MaxBackoff)
	s.crashes[name]++
	if err == nil {
		err = errors.New("exit status 0")
	}
	s.say("%s exited (%v); restarting it in %s, as the kubelet would (Ctrl-C stops everything)", name, err, delay)
	time.AfterFunc(delay, func() {
		s.mu.Lock()
		current := s.procs[name] == cmd && !s.stopping
		s.mu.Unlock()
		if current {
			if err := s.start(name); err != nil {
				s.say("%v", err)
			}
		}
	})
}

// say writes one line of the stack's own on the output.
func (s *Stack) say(format string, args ...any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	fmt.Fprintf(s.out, "make run: "+format+"\n", args...)
}

// Restart starts the named process again, as it was first started, after
// killing it if it still runs.
func (s *Stack) Restart(name string) error {
	s.mu.Lock()
	cmd, done := s.procs[name], s.done[name]
	s.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("no process %q", name)
	}
	s.mu.Lock()
	s.killed[cmd] = true
	s.mu.Unlock()
	_ = cmd.Process.Kill()
	<-done
	return s.start(name)
}

// waitReady waits until every process serves, in start order.
func (s *Stack) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for _, name := range s.order {
		if err := s.waitServing(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// waitServing waits until one process serves (see Stack.ready), and fails
// if it exits first.
func (s *Stack) waitServing(ctx context.Context, name string) error {
	s.mu.Lock()
	done := s.done[name]
	s.mu.Unlock()
	if err := WaitServing(ctx, s.ready[name], done); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// WaitServing waits until a process serves at target: an http:// URL that
// answers 200, or an address that accepts a connection. It fails if done
// is closed (the process exited) or ctx ends first.
func WaitServing(ctx context.Context, target string, done <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		var err error
		if strings.HasPrefix(target, "http://") {
			var rsp *http.Response
			if rsp, err = client.Get(target); err == nil {
				rsp.Body.Close()
				if rsp.StatusCode == http.StatusOK {
					return nil
				}
				err = fmt.Errorf("answered %s", rsp.Status)
			}
		} else {
			var c net.Conn
			if c, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", target); err == nil {
				c.Close()
				return nil
			}
		}
		select {
		case <-done:
			return errors.New("exited before it served")
		case <-ctx.Done():
			return fmt.Errorf("did not serve at %s in time (last error: %v)", target, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Exited receives the name of each process that ends.
func (s *Stack) Exited() <-chan string { return s.exited }

// Signal sends sig to one process ("greeter", "health" or "web").
func (s *Stack) Signal(name string, sig os.Signal) error {
	s.mu.Lock()
	cmd, ok := s.procs[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("no process %q", name)
	}
	return cmd.Process.Signal(sig)
}

// Freeze stops one process with SIGSTOP and returns once it is stopped, as
// a hung process would be: its connections stay open, nothing answers.
func (s *Stack) Freeze(name string) error {
	if err := s.Signal(name, syscall.SIGSTOP); err != nil {
		return err
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if stopped(s.Pid(name)) {
			return nil
		}
	}
	return fmt.Errorf("%s did not stop after SIGSTOP", name)
}

// Names are the stack's processes, in start order.
func (s *Stack) Names() []string { return slices.Clone(s.order) }

// Pid is the process id of one process.
func (s *Stack) Pid(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cmd, ok := s.procs[name]; ok {
		return cmd.Process.Pid
	}
	return 0
}

// ExitCode is how one process ended: its exit code, or -1 if a signal
// ended it or it still runs.
func (s *Stack) ExitCode(name string) int {
	s.mu.Lock()
	cmd, done := s.procs[name], s.done[name]
	s.mu.Unlock()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Wait waits at most limit for one process to exit.
func (s *Stack) Wait(name string, limit time.Duration) error {
	s.mu.Lock()
	done := s.done[name]
	s.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-time.After(limit):
		return fmt.Errorf("%s still runs after %s", name, limit)
	}
}

// Stop sends SIGTERM to each process, callers before callees (the gateway,
// web, the sidecar, the other services, the greeter), waits for it to exit, and kills
// it if it is still running after StopTimeout. It returns once all have
// exited.
func (s *Stack) Stop() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	for i := len(s.order) - 1; i >= 0; i-- {
		name := s.order[i]
		s.mu.Lock()
		cmd, done, ok := s.procs[name], s.done[name], s.procs[name] != nil
		s.mu.Unlock()
		if ok {
			StopProcess(cmd, done)
		}
	}
	if s.tempDir != "" {
		_ = os.RemoveAll(s.tempDir)
	}
}

// Down stops one process as Stop does, and keeps it down until Up.
func (s *Stack) Down(name string) error {
	s.mu.Lock()
	cmd, done := s.procs[name], s.done[name]
	if cmd == nil {
		s.mu.Unlock()
		return fmt.Errorf("no process %q", name)
	}
	s.killed[cmd] = true // not a crash: no restart after a backoff
	s.mu.Unlock()
	StopProcess(cmd, done)
	return nil
}

// Up starts a process that Down stopped, and waits until it serves.
func (s *Stack) Up(ctx context.Context, name string) error {
	if err := s.start(name); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return s.waitServing(ctx, name)
}

// StopProcess sends SIGTERM to a process, waits for it to exit (done is
// closed), and kills it if it is still running after StopTimeout.
func StopProcess(cmd *exec.Cmd, done <-chan struct{}) {
	_ = cmd.Process.Signal(syscall.SIGCONT) // a stopped process cannot handle SIGTERM
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(StopTimeout):
		_ = cmd.Process.Kill()
		<-done
	}
}

// reload stops one process as Stop does, starts it again from its binary,
// which may have changed, and waits until it serves.
func (s *Stack) reload(ctx context.Context, name string) error {
	s.mu.Lock()
	cmd, done := s.procs[name], s.done[name]
	if cmd == nil || s.stopping {
		s.mu.Unlock()
		return fmt.Errorf("no process %q", name)
	}
	s.killed[cmd] = true // not a crash: no restart after a backoff
	s.mu.Unlock()
	StopProcess(cmd, done)
	if err := s.start(name); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return s.waitServing(ctx, name)
}

// prefixWriter writes whole lines to out, each behind prefix.
type prefixWriter struct {
	prefix string
	out    io.Writer
	mu     *sync.Mutex
	buf    bytes.Buffer
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadBytes('\n')
		if err != nil { // no newline yet: keep the partial line
			w.buf.Reset()
			w.buf.Write(line)
			return len(p), nil
		}
		fmt.Fprintf(w.out, "%s%s", w.prefix, line)
	}
}

// Flush writes a last line that had no newline.
func (w *prefixWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() > 0 {
		fmt.Fprintf(w.out, "%s%s\n", w.prefix, w.buf.Bytes())
		w.buf.Reset()
	}
}
