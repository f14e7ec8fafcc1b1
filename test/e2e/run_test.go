package e2e

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/micro/kubernetes/dev/stack"
)

// make run's program: built, started, used; a killed greeter is started
// again by itself; stopped with SIGTERM, nothing it started outlives it.
func TestLocalRun(t *testing.T) {
	root, err := stack.Root(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r := startRunner(t, root)
	ports, bin := r.ports, r.bin
	others, err := stack.Services(root)
	if err != nil {
		t.Fatal(err)
	}

	if a := get(t, "GET", ports.URL()+"/greeter?name=run"); a.status != 200 || !strings.Contains(a.body, "Hello run") {
		t.Fatalf("GET /greeter through make run's stack: %d %s", a.status, a.body)
	}
	// The micro call line it printed works as printed, by a shell.
	line, ok := r.waitFor("micro call:", time.Second)
	if !ok {
		t.Fatal("the runner printed no micro call line")
	}
	_, call, _ := strings.Cut(line, "micro call:")
	sh := exec.CommandContext(t.Context(), "sh", "-c", call)
	sh.Dir = root
	if out, err := sh.CombinedOutput(); err != nil || string(out) != `{"message":"Hello Alice"}`+"\n" {
		t.Fatalf("the runner's micro call line %q: %v, %q", call, err, out)
	}
	children := processesIn(t, bin)
	if a := get(t, "POST", ports.APIURL()+"/greeter/Greeter.Hello"); a.status != 400 {
		t.Fatalf("POST an empty request through make run's gateway: %d %s, want the greeter's 400", a.status, a.body)
	}
	if len(children) != 4+len(others) {
		t.Fatalf("running from %s: %v, want greeter, health, web, api and %v", bin, children, others)
	}

	// The greeter dies: the runner says why and starts it again, and the
	// web answers again without anyone touching it.
	if err := syscall.Kill(pidOf(t, bin, "greeter"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	line, ok = r.waitFor("make run: greeter exited", 10*time.Second)
	if !ok {
		t.Fatal("the runner did not say that the greeter exited")
	}
	if !strings.Contains(line, "signal: killed") || !strings.Contains(line, "restarting it in "+stack.FirstBackoff.String()) {
		t.Errorf("the runner said %q, want why the greeter exited and when it restarts", line)
	}
	for deadline := time.Now().Add(stack.FirstBackoff + 20*time.Second); ; time.Sleep(100 * time.Millisecond) {
		if a := get(t, "GET", ports.URL()+"/greeter?name=again"); a.status == 200 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("after the greeter was killed: %d %s, want 200 once it is restarted", a.status, a.body)
		}
	}
	r.stop(t, syscall.SIGTERM)
}

// runner is make run's program, built from a repository and running it on
// free loopback ports.
type runner struct {
	cmd   *exec.Cmd
	ports stack.Ports
	bin   string // where it built the application's binaries

	mu    sync.Mutex
	lines []string // what it printed, a line each
	ended chan struct{}
}

// startRunner builds the runner in root (a repository, or a copy) and
// starts it there, and returns once it says the application runs. Its
// output goes to the test's log.
func startRunner(t *testing.T, root string, flags ...string) *runner {
	t.Helper()
	dir := t.TempDir()
	program := filepath.Join(dir, "run")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", program, "./dev/run")
	build.Dir = root
	build.Env = append(os.Environ(), "GOWORK=") // root's own go.work
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the runner: %v\n%s", err, out)
	}
	others, err := stack.Services(root)
	if err != nil {
		t.Fatal(err)
	}
	// Each other service of services/ takes a port from -services-port,
	// and its metrics port stack.MetricsOffset above.
	r := &runner{
		ports: stack.Ports{
			Greeter: freePort(t), Health: freePort(t), Web: freePort(t), API: freePort(t),
			GreeterMetrics: freePort(t), WebMetrics: freePort(t), APIMetrics: freePort(t), NATS: freePort(t), NATSMonitor: freePort(t),
		},
		bin:   filepath.Join(dir, "bin"),
		ended: make(chan struct{}),
	}
	r.cmd = exec.Command(program, append([]string{
		"-bin", r.bin,
		"-web-port", strconv.Itoa(r.ports.Web),
		"-greeter-port", strconv.Itoa(r.ports.Greeter),
		"-health-port", strconv.Itoa(r.ports.Health),
		"-greeter-metrics-port", strconv.Itoa(r.ports.GreeterMetrics),
		"-web-metrics-port", strconv.Itoa(r.ports.WebMetrics),
		"-api-port", strconv.Itoa(r.ports.API),
		"-api-metrics-port", strconv.Itoa(r.ports.APIMetrics),
		"-nats-port", strconv.Itoa(r.ports.NATS),
		"-nats-monitor-port", strconv.Itoa(r.ports.NATSMonitor),
		"-services-port", strconv.Itoa(freePortRun(t, len(others)))}, flags...)...)
	r.cmd.Dir = root
	r.cmd.Env = append(os.Environ(), "GOWORK=")
	out, w := io.Pipe()
	r.cmd.Stdout, r.cmd.Stderr = w, w
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.cmd.Process.Kill() })
	go func() {
		_ = r.cmd.Wait()
		w.Close()
	}()
	go func() { // keep reading, or the processes block on a full pipe
		defer close(r.ended)
		for lines := bufio.NewScanner(out); lines.Scan(); {
			t.Log(lines.Text())
			r.mu.Lock()
			r.lines = append(r.lines, lines.Text())
			r.mu.Unlock()
		}
	}()
	// The runner builds the application first: TestMain's build is in the
	// cache by now, and a copy builds from it too (-trimpath), so this
	// bound is the run's.
	if _, ok := r.waitFor("Open "+r.ports.URL(), 3*time.Minute); !ok {
		t.Fatal("the runner never printed the URL to open")
	}
	return r
}

// waitFor returns the first line the runner printed that holds s, waiting
// at most limit for it.
func (r *runner) waitFor(s string, limit time.Duration) (string, bool) {
	for deadline := time.Now().Add(limit); ; time.Sleep(20 * time.Millisecond) {
		r.mu.Lock()
		for _, l := range r.lines {
			if strings.Contains(l, s) {
				r.mu.Unlock()
				return l, true
			}
		}
		r.mu.Unlock()
		select {
		case <-r.ended:
			return "", false
		default:
		}
		if time.Now().After(deadline) {
			return "", false
		}
	}
}

// stop sends sig to the runner, which must exit with 0 and leave no
// process behind.
func (r *runner) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.ended:
		if !r.cmd.ProcessState.Success() {
			t.Fatalf("the runner exited with %v after %v, want 0", r.cmd.ProcessState, sig)
		}
	case <-time.After(stack.StopTimeout + 5*time.Second):
		t.Fatalf("the runner did not exit after %v", sig)
	}
	if left := processesIn(t, r.bin); len(left) > 0 {
		t.Fatalf("processes left behind: %v", left)
	}
}

// processesIn lists the running processes whose executable is in dir.
func processesIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("reading /proc: %v", err)
	}
	var found []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && filepath.Dir(exe) == dir {
			found = append(found, filepath.Base(exe)+"["+e.Name()+"]")
		}
	}
	return found
}

// pidOf is the process id of the one running process named name whose
// executable is in dir.
func pidOf(t *testing.T, dir, name string) int {
	t.Helper()
	for _, p := range processesIn(t, dir) {
		if exe, pid, _ := strings.Cut(strings.TrimSuffix(p, "]"), "["); exe == name {
			n, err := strconv.Atoi(pid)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s running from %s", name, dir)
	return 0
}

// freePortRun returns a port p such that p to p+n-1, and the same ports
// stack.MetricsOffset above, are reserved until the test ends.
func freePortRun(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		p, release, err := stack.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		releases, free := []func(){release}, true
		for i := 0; i < n && free; i++ {
			for _, port := range []int{p + i, p + i + stack.MetricsOffset} {
				if port == p {
					continue
				}
				release, err := stack.Reserve(port)
				if free = free && err == nil; err == nil {
					releases = append(releases, release)
				}
			}
		}
		for _, release := range releases {
			if free {
				t.Cleanup(release)
			} else {
				release()
			}
		}
		if free {
			return p
		}
	}
	t.Fatalf("found no %d free ports in a row", n)
	return 0
}
