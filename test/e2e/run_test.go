package e2e

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
	dir := t.TempDir()
	runner := filepath.Join(dir, "run")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", runner, "./dev/run")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the runner: %v\n%s", err, out)
	}
	// The runner builds the application again: TestMain's build is in the
	// cache by now, so this bound is the run's.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	// Each other service of services/ takes a port from -services-port,
	// and its metrics port stack.MetricsOffset above.
	others, err := stack.Services(root)
	if err != nil {
		t.Fatal(err)
	}
	ports := stack.Ports{Greeter: freePort(t), Health: freePort(t), Web: freePort(t), API: freePort(t), GreeterMetrics: freePort(t), WebMetrics: freePort(t), APIMetrics: freePort(t)}
	bin := filepath.Join(dir, "bin")
	cmd := exec.CommandContext(ctx, runner,
		"-bin", bin,
		"-web-port", strconv.Itoa(ports.Web),
		"-greeter-port", strconv.Itoa(ports.Greeter),
		"-health-port", strconv.Itoa(ports.Health),
		"-greeter-metrics-port", strconv.Itoa(ports.GreeterMetrics),
		"-web-metrics-port", strconv.Itoa(ports.WebMetrics),
		"-api-port", strconv.Itoa(ports.API),
		"-api-metrics-port", strconv.Itoa(ports.APIMetrics),
		"-services-port", strconv.Itoa(freePortRun(t, len(others))))
	cmd.Dir = root
	out, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	lines := bufio.NewScanner(out)
	running := false
	for !running && lines.Scan() {
		t.Log(lines.Text())
		running = strings.Contains(lines.Text(), "Open "+ports.URL())
	}
	if !running {
		t.Fatalf("the runner never printed the URL to open: %v", lines.Err())
	}
	drained := make(chan struct{})
	restarting := make(chan string, 1)
	go func() { // keep reading, or the processes block on a full pipe
		defer close(drained)
		for lines.Scan() {
			t.Log(lines.Text())
			if strings.Contains(lines.Text(), "make run: greeter exited") {
				select {
				case restarting <- lines.Text():
				default:
				}
			}
		}
	}()

	if a := get(t, "GET", ports.URL()+"/greeter?name=run"); a.status != 200 || !strings.Contains(a.body, "Hello run") {
		t.Fatalf("GET /greeter through make run's stack: %d %s", a.status, a.body)
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
	select {
	case line := <-restarting:
		if !strings.Contains(line, "signal: killed") || !strings.Contains(line, "restarting it in "+stack.FirstBackoff.String()) {
			t.Errorf("the runner said %q, want why the greeter exited and when it restarts", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the runner did not say that the greeter exited")
	}
	for deadline := time.Now().Add(stack.FirstBackoff + 20*time.Second); ; time.Sleep(100 * time.Millisecond) {
		if a := get(t, "GET", ports.URL()+"/greeter?name=again"); a.status == 200 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("after the greeter was killed: %d %s, want 200 once it is restarted", a.status, a.body)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		w.Close()
		<-drained
		if err != nil {
			t.Fatalf("the runner exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(stack.StopTimeout + 5*time.Second):
		t.Fatal("the runner did not exit after SIGTERM")
	}
	if left := processesIn(t, bin); len(left) > 0 {
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
