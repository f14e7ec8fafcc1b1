// Package stack builds the application's binaries and runs them together on
// loopback: the greeter, its health sidecar and the web frontend, wired as in
// the cluster but with addresses instead of Kubernetes Services. `make run`
// and the end-to-end tests both use it, so what is tested is what you run.
package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

// The binaries, by name, and the package each is built from.
var packages = []struct{ name, pkg string }{
	{"greeter", "./services/greeter"},
	{"health", "./health"},
	{"web", "./web"},
}

// StopTimeout bounds a graceful stop before processes are killed.
const StopTimeout = 15 * time.Second

// Ports are the loopback ports the three processes listen on.
type Ports struct {
	Greeter, Health, Web int
	// Prometheus metrics of the greeter and the web frontend.
	GreeterMetrics, WebMetrics int
}

// MetricsURL is where one process serves its metrics.
func (p Ports) MetricsURL(name string) string {
	port := map[string]int{"greeter": p.GreeterMetrics, "web": p.WebMetrics}[name]
	return "http://" + loopback(port) + "/metrics"
}

// URL is the web frontend's address.
func (p Ports) URL() string { return "http://" + loopback(p.Web) }

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
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	args := []string{"build", "-o", abs + string(filepath.Separator)}
	for _, p := range packages {
		args = append(args, p.pkg)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Stack is the three processes, running.
type Stack struct {
	Ports Ports
	dir   string
	args  map[string][]string
	env   map[string][]string
	out   io.Writer
	outMu sync.Mutex // one line at a time on out

	mu    sync.Mutex
	procs map[string]*exec.Cmd
	done  map[string]chan struct{}
	// exited receives the name of each process that ends.
	exited chan string
}

// ConfigFile is the configuration the cluster mounts from a ConfigMap,
// relative to the repository's root.
const ConfigFile = "deploy/base/config.json"

// Options say what to run and where.
type Options struct {
	Bin        string    // the folder of the binaries (see Build)
	Ports      Ports     // where each listens
	ConfigFile string    // the greeter's and the web's configuration
	Out        io.Writer // their output, a line at a time behind their name
}

// Start runs the binaries and returns once the web frontend and the sidecar
// answer their health checks.
func Start(ctx context.Context, o Options) (*Stack, error) {
	ports, greeter := o.Ports, o.Ports.GreeterAddress()
	s := &Stack{
		Ports: ports,
		dir:   o.Bin,
		args: map[string][]string{
			"greeter": {"--server_address=" + greeter, "--metrics_address=" + loopback(ports.GreeterMetrics), "--config_file=" + o.ConfigFile},
			"health": {
				"--server_name=" + greeterv1.ServiceName,
				"--server_address=" + greeter,
				"--health_address=" + loopback(ports.Health),
			},
			"web": {"--server_address=" + loopback(ports.Web), "--metrics_address=" + loopback(ports.WebMetrics), "--config_file=" + o.ConfigFile},
		},
		env: map[string][]string{
			// No DNS knows "greeter" here: pin it to its loopback address.
			"web": {"STATIC_SELECTOR_ADDRESSES=" + greeterv1.ServiceName + "=" + greeter},
		},
		out:    o.Out,
		procs:  map[string]*exec.Cmd{},
		done:   map[string]chan struct{}{},
		exited: make(chan string, 64),
	}
	for _, p := range packages {
		if err := s.start(p.name); err != nil {
			s.Stop()
			return nil, err
		}
	}
	if err := s.waitReady(ctx, 30*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Stack) start(name string) error {
	cmd := exec.Command(filepath.Join(s.dir, name), s.args[name]...)
	cmd.Env = append(os.Environ(), s.env[name]...)
	w := &prefixWriter{prefix: fmt.Sprintf("%-7s | ", name), out: s.out, mu: &s.outMu}
	cmd.Stdout, cmd.Stderr = w, w
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.procs[name], s.done[name] = cmd, done
	s.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		w.Flush()
		close(done)
		select {
		case s.exited <- name:
		default: // nobody is listening for that many exits
		}
	}()
	return nil
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
	_ = cmd.Process.Kill()
	<-done
	return s.start(name)
}

func (s *Stack) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for _, url := range []string{s.Ports.HealthURL(), s.Ports.URL() + "/health"} {
		for {
			rsp, err := client.Get(url)
			if err == nil {
				rsp.Body.Close()
				if rsp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case name := <-s.exited:
				return fmt.Errorf("%s exited before the application was ready", name)
			case <-ctx.Done():
				return fmt.Errorf("%s did not answer 200 within %s (last error: %v)", url, limit, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
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

// Stop sends SIGTERM to each process, callers before callees (web, the
// sidecar, the greeter), waits for it to exit, and kills it if it is still
// running after StopTimeout. It returns once all have exited.
func (s *Stack) Stop() {
	for i := len(packages) - 1; i >= 0; i-- {
		name := packages[i].name
		s.mu.Lock()
		cmd, done, ok := s.procs[name], s.done[name], s.procs[name] != nil
		s.mu.Unlock()
		if !ok {
			continue
		}
		_ = cmd.Process.Signal(syscall.SIGCONT) // a stopped process cannot handle SIGTERM
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(StopTimeout):
			_ = cmd.Process.Kill()
			<-done
		}
	}
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
