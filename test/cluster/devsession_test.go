package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// devSession is make dev, running in a process group of its own, and
// every line it printed, with when it was read.
type devSession struct {
	cmd   *exec.Cmd
	start time.Time

	mu    sync.Mutex
	lines []devLine
	ended chan struct{}
}

type devLine struct {
	at   time.Time
	text string
}

// startDev runs make dev in dir, with what a developer's shell has: the
// cluster's kubeconfig, a registry (SKAFFOLD_DEFAULT_REPO, as the README
// says), a namespace, and skaffold, kubectl and kustomize on PATH.
func startDev(t *testing.T, dir, ns string) *devSession {
	t.Helper()
	bins := env.cluster.Host.Bins
	path := strings.Join([]string{filepath.Dir(bins.Skaffold), filepath.Dir(bins.Kubectl), filepath.Dir(bins.Kustomize), os.Getenv("PATH")}, ":")
	cmd := exec.Command("make", "dev")
	cmd.Dir = dir
	// A shell's environment: not the make test-cluster this may run under.
	shell := slices.DeleteFunc(os.Environ(), func(v string) bool {
		name, _, _ := strings.Cut(v, "=")
		return name == "MAKEFLAGS" || name == "MFLAGS" || name == "MAKELEVEL"
	})
	cmd.Env = append(shell,
		"PATH="+path,
		"KUBECONFIG="+env.cluster.Kubeconfig,
		"SKAFFOLD_DEFAULT_REPO="+env.cluster.Registry,
		"SKAFFOLD_NAMESPACE="+ns,
		// skaffold's global config as the other tests have it (no
		// metrics, no survey), and a cache of its own: a first make dev.
		"SKAFFOLD_CONFIG="+filepath.Join(env.cluster.Host.Dir, "skaffold-global.yaml"),
		"SKAFFOLD_CACHE_FILE="+filepath.Join(t.TempDir(), "skaffold-cache.yaml"),
		// The copy's own go.work; every module is in the cache.
		"GOWORK=", "GOPROXY=off", "GOFLAGS=-mod=readonly",
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a terminal's foreground job
	out, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	d := &devSession{cmd: cmd, ended: make(chan struct{})}
	logFile, err := os.Create(filepath.Join(t.TempDir(), "make-dev.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // if the test stopped early
		<-d.ended
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("make dev printed (its last 200 lines):\n%s", lastLines(string(b), 200))
		}
	})
	go func() {
		_ = cmd.Wait()
		w.Close()
	}()
	go func() {
		defer close(d.ended)
		defer logFile.Close()
		s := bufio.NewScanner(out)
		s.Buffer(nil, 1<<20) // skaffold prints a build's error on one line
		for s.Scan() {
			at := time.Now()
			fmt.Fprintf(logFile, "%s %s\n", at.Format("15:04:05.000"), s.Text())
			d.mu.Lock()
			d.lines = append(d.lines, devLine{at, s.Text()})
			d.mu.Unlock()
		}
	}()
	return d
}

// podLog says whether a line is a pod's log, which skaffold dev prints
// behind the pod's and container's names.
func podLog(line string) bool { return strings.HasPrefix(line, "[") }

// linesSince are skaffold's own lines (not the pods' logs) read after t that
// hold s.
func (d *devSession) linesSince(t time.Time, s string) []devLine {
	d.mu.Lock()
	defer d.mu.Unlock()
	var found []devLine
	for _, l := range d.lines {
		if l.at.After(t) && !podLog(l.text) && strings.Contains(l.text, s) {
			found = append(found, l)
		}
	}
	return found
}

// waitLine waits for the first line of skaffold's own after t that holds s.
func (d *devSession) waitLine(t time.Time, s string, limit time.Duration) (devLine, error) {
	for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
		if found := d.linesSince(t, s); len(found) > 0 {
			return found[0], nil
		}
		select {
		case <-d.ended:
			return devLine{}, fmt.Errorf("make dev ended before it printed %q", s)
		default:
		}
		if time.Now().After(deadline) {
			return devLine{}, fmt.Errorf("make dev did not print %q within %s", s, limit)
		}
	}
}

// first is when skaffold first printed s after t.
func (d *devSession) first(t *testing.T, after time.Time, s string) time.Time {
	t.Helper()
	l, err := d.waitLine(after, s, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return l.at
}

// waitIdle waits until skaffold is done with what a change written at t
// set off: it watches for changes again.
func (d *devSession) waitIdle(t *testing.T, written time.Time) {
	t.Helper()
	if _, err := d.waitLine(written, "Watching for changes...", editBound); err != nil {
		t.Fatal(err)
	}
}

// forwardLine is how skaffold says where it forwards the web Service.
var forwardLine = regexp.MustCompile(`Port forwarding service/web in namespace \S+, remote port 80 -> (http://\S+)`)

// waitForward returns the URL skaffold forwards the web to, the first time
// it says so after t.
func (d *devSession) waitForward(t *testing.T, after time.Time, limit time.Duration) string {
	t.Helper()
	l, err := d.waitLine(after, "Port forwarding service/web", limit)
	if err != nil {
		t.Fatal(err)
	}
	m := forwardLine.FindStringSubmatch(l.text)
	if m == nil {
		t.Fatalf("skaffold said %q, want where it forwards the web", l.text)
	}
	return m[1]
}

// transcript is what skaffold printed from t to its first line holding
// until (to its last line for ""), without the pods' logs.
func (d *devSession) transcript(t time.Time, until string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	for _, l := range d.lines {
		if l.at.Before(t) || podLog(l.text) {
			continue
		}
		b.WriteString(l.text + "\n")
		if until != "" && strings.Contains(l.text, until) {
			break
		}
	}
	return b.String()
}

// interrupt sends SIGINT to make dev's process group, as Ctrl-C in a
// terminal does, and checks that everything skaffold deployed is deleted,
// the forwarded port is closed, and no process of the group is left.
func (d *devSession) interrupt(t *testing.T, ns, forward string) {
	t.Helper()
	pgid := d.cmd.Process.Pid
	sent := time.Now()
	if err := syscall.Kill(-pgid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.ended:
	case <-time.After(2 * time.Minute):
		t.Fatal("make dev did not end within 2m of Ctrl-C")
	}
	t.Logf("Ctrl-C: make dev ended after %s with %v; skaffold printed:\n%s", time.Since(sent).Round(100*time.Millisecond),
		d.cmd.ProcessState, d.transcript(sent, ""))
	if _, err := eventually(t.Context(), time.Minute, func(context.Context) error {
		if left := groupProcesses(pgid); len(left) > 0 {
			return fmt.Errorf("left running: %v", left)
		}
		return nil
	}); err != nil {
		t.Errorf("after Ctrl-C, make dev's processes: %v", err)
	}
	if _, err := eventually(t.Context(), time.Minute, func(ctx context.Context) error {
		objects, err := appObjects(ctx, ns)
		if err == nil && len(objects) > 0 {
			err = fmt.Errorf("still there: %v", objects)
		}
		return err
	}); err != nil {
		t.Errorf("after Ctrl-C, what skaffold deployed: %v", err)
	} else {
		t.Logf("Ctrl-C: every object skaffold deployed, pods included, was gone %s after the signal", time.Since(sent).Round(100*time.Millisecond))
	}
	u := strings.TrimPrefix(forward, "http://")
	if c, err := net.DialTimeout("tcp", u, time.Second); err == nil {
		c.Close()
		t.Errorf("after Ctrl-C, %s still accepts connections", u)
	}
}

// groupProcesses are the processes of a process group still running, by
// pid and command.
func groupProcesses(pgid int) []string {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var left []string
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// The fields after the command, which is in parentheses: state,
		// ppid, pgrp.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		fields := strings.Fields(s[i+1:])
		if len(fields) > 2 && fields[2] == strconv.Itoa(pgid) && fields[0] != "Z" {
			left = append(left, strings.TrimPrefix(filepath.Dir(f), "/proc/")+" "+s[strings.IndexByte(s, '(')+1:i])
		}
	}
	return left
}

// appObjects are the objects of ns that carry the application's label, of
// every kind it deploys, pods included, as kubectl names them.
func appObjects(ctx context.Context, ns string) ([]string, error) {
	cmd := exec.CommandContext(ctx, env.cluster.Host.Bins.Kubectl, "get",
		"deployments,statefulsets,services,configmaps,serviceaccounts,poddisruptionbudgets,pods",
		"--selector="+partOfLabel+"="+partOf, "--namespace="+ns, "--output=name")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.cluster.Kubeconfig)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl get: %w", err)
	}
	return strings.Fields(string(out)), nil
}

// lastLines are the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
