package cluster_test

import (
	"bufio"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTrimmedFork runs the README's commands that drop the events (the stats
// service and NATS), the load generator, the bench and the test tiers, in
// a copy of the repository, then what a
// fork still needs: make render, make test and make run. It lives in this
// tier, which has skaffold built already, for make render. Not in parallel:
// its make test takes both cores, and beside it TestReliability measured a
// web answer at 2.97 s against its bound of 2.5 s.
func TestTrimmedFork(t *testing.T) {
	dir := t.TempDir()
	copyRepository(t, dir)
	// A fork is a git repository; make test's template tests list its files.
	run(t, dir, "git", "init", "-q")
	run(t, dir, "git", "add", "-A")
	readme, err := os.ReadFile(filepath.Join(env.root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)What a fork usually drops.*?```sh\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal(`the README has no "What a fork usually drops" commands`)
	}
	run(t, dir, "bash", "-euo", "pipefail", "-c", string(m[1]))
	for _, gone := range []string{"loadgen", "dev/bench", "test/e2e", "test/cluster", "services/stats", "deploy/base/nats.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s is still there after the README's commands (%v)", gone, err)
		}
	}

	rendered := run(t, dir, "make", "render")
	if !strings.Contains(rendered, "kind: Deployment") || strings.Contains(rendered, "loadgen") || strings.Contains(rendered, "nats") {
		t.Errorf("make render in the trimmed fork:\n%s", rendered)
	}
	for _, p := range []string{"loadgen", "conduit,network-policies"} {
		_, err := runMay(dir, "make", "render", "PROFILES="+p)
		if want := p == "loadgen"; (err != nil) != want {
			t.Errorf("make render PROFILES=%s: %v", p, err)
		}
	}
	if out := run(t, dir, "make", "test-cluster"); !strings.Contains(out, "test/cluster is not in this repository") {
		t.Errorf("make test-cluster in the trimmed fork said:\n%s", out)
	}
	// The template test makes a copy of its own and would take minutes
	// more; it runs in the repository's own make test.
	run(t, dir, "make", "test", "TESTFLAGS=-skip=^TestNewServiceAndRenameInACopy$")
	checkMakeRun(t, dir)
}

// checkMakeRun starts make run in dir on free ports, asks for a greeting,
// and stops it.
func checkMakeRun(t *testing.T, dir string) {
	t.Helper()
	names := []string{"web-port", "greeter-port", "health-port", "greeter-metrics-port", "web-metrics-port", "api-port", "api-metrics-port"}
	ports := map[string]int{}
	var flags []string
	for i, port := range freePorts(t, len(names)) {
		ports[names[i]] = port
		flags = append(flags, "-"+names[i]+"="+strconv.Itoa(port))
	}
	cmd := exec.CommandContext(t.Context(), "make", "run", "RUNFLAGS="+strings.Join(flags, " "))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=", "GOPROXY=off")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		w.Close() // the scanner below ends when make run does
		exited <- err
	}()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // if it is still running
	}()
	url := "http://127.0.0.1:" + strconv.Itoa(ports["web-port"])
	var log strings.Builder
	running := false
	lines := bufio.NewScanner(out)
	for !running && lines.Scan() {
		log.WriteString(lines.Text() + "\n")
		running = strings.Contains(lines.Text(), "Open "+url)
	}
	if !running {
		t.Fatalf("make run in the trimmed fork never said to open %s:\n%s", url, log.String())
	}
	go func() { // keep reading, or the processes block on a full pipe
		for lines.Scan() {
		}
	}()
	a, err := get(t.Context(), url+"/greeter?name=Fork")
	if err != nil || a.status != 200 || !strings.Contains(a.body, "Hello Fork") {
		t.Fatalf("make run in the trimmed fork: %v %d %s", err, a.status, a.body)
	}
	// Ctrl-C reaches make and the runner, its process group: make dies of
	// it, the runner stops the application and exits.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("make run did not stop on Ctrl-C")
	}
	bin := filepath.Join(dir, "bin")
	exes, err := filepath.Glob("/proc/[0-9]*/exe")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range exes {
		if exe, err := os.Readlink(e); err == nil && filepath.Dir(exe) == bin {
			t.Errorf("%s still runs after Ctrl-C (%s)", exe, e)
		}
	}
}

// copyRepository copies the files git knows of the repository into dir.
func copyRepository(t *testing.T, dir string) {
	t.Helper()
	list := run(t, env.root, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	for _, f := range strings.Split(strings.TrimRight(list, "\x00"), "\x00") {
		info, err := os.Stat(filepath.Join(env.root, f))
		if os.IsNotExist(err) {
			continue // deleted, not yet committed
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(env.root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, info.Mode()); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs a command in dir and returns its output, failing the test if it
// fails. The tools it builds go to the usual cache, already warm here.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	out, err := runMay(dir, name, args...)
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	return out
}

func runMay(dir, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	// As in a user's shell: the tier runs with GOWORK=off, the fork uses
	// its go.work. Every module is in the cache (kube.Build): fail at once
	// rather than wait on a network that is not there.
	cmd.Env = append(os.Environ(), "GOWORK=", "GOPROXY=off")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// freePorts are n different ports free on the namespace's loopback now.
// They come from below the ephemeral range (32768-60999): make run binds
// them only after it has built the binaries, and in that time the
// cluster's own connections would take ports from that range.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for p := 20000 + rand.IntN(10000); len(ports) < n && p < 32768; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		defer l.Close() // held until all are found, so none is taken twice
		ports = append(ports, p)
	}
	if len(ports) < n {
		t.Fatalf("found %d free ports below 32768, want %d", len(ports), n)
	}
	return ports
}
