package e2e

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/micro/kubernetes/local/stack"
)

// make run's program: built, started, used, stopped with SIGTERM, and
// nothing it started may outlive it.
func TestLocalRunStopsEverything(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	root, err := stack.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	runner := filepath.Join(dir, "local")
	build := exec.CommandContext(ctx, "go", "build", "-o", runner, "./local")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the runner: %v\n%s", err, out)
	}

	// Each other service of services/ takes two ports from -services-port.
	others, err := stack.Services(root)
	if err != nil {
		t.Fatal(err)
	}
	ports := stack.Ports{Greeter: freePort(t), Health: freePort(t), Web: freePort(t), GreeterMetrics: freePort(t), WebMetrics: freePort(t)}
	bin := filepath.Join(dir, "bin")
	cmd := exec.CommandContext(ctx, runner,
		"-bin", bin,
		"-web-port", strconv.Itoa(ports.Web),
		"-greeter-port", strconv.Itoa(ports.Greeter),
		"-health-port", strconv.Itoa(ports.Health),
		"-greeter-metrics-port", strconv.Itoa(ports.GreeterMetrics),
		"-web-metrics-port", strconv.Itoa(ports.WebMetrics),
		"-services-port", strconv.Itoa(freePortRun(t, 2*len(others))))
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
	go func() { // keep reading, or the processes block on a full pipe
		defer close(drained)
		for lines.Scan() {
			t.Log(lines.Text())
		}
	}()

	if a := get(t, "GET", ports.URL()+"/greeter?name=run"); a.status != 200 || !strings.Contains(a.body, "Hello run") {
		t.Fatalf("GET /greeter through make run's stack: %d %s", a.status, a.body)
	}
	children := processesIn(t, bin)
	if len(children) != 3+len(others) {
		t.Fatalf("running from %s: %v, want greeter, health, web and %v", bin, children, others)
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

// freePortRun returns a port p such that p to p+n-1 are free.
func freePortRun(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		p, free := freePort(t), true
		for i := 1; i < n && free; i++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+i)))
			if free = err == nil; free {
				l.Close()
			}
		}
		if free {
			return p
		}
	}
	t.Fatalf("found no %d free ports in a row", n)
	return 0
}
