package cluster_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/micro/kubernetes/test/cluster/kube"
)

// holdEnv makes the test binary start its cluster, print "ready" and wait
// for a signal instead of running tests.
const holdEnv = "CLUSTER_TEST_HOLD"

// TestInterrupt runs the whole tier again in a child test binary, from its
// host stage (inside this cluster's namespaces, which changes nothing for
// it), interrupts it once its cluster runs, as Ctrl-C would, and checks that
// it exits with 130 and leaves nothing: no process, network or mount
// namespace, no cgroup, and the sysctls the kubelet rewrites as they were.
// Not in parallel: a second cluster starting takes the machine's two cores
// for most of a minute, and a run that had TestBalancing beside it saw 36
// of its 6,416 requests wait out the web's 2 s deadline on the greeter,
// between +47 s and +52 s, with no step of its own under way.
func TestInterrupt(t *testing.T) {
	before := kube.Sysctls()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(kube.FreshEnv(), holdEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// On a failure below, stop the child as a user would, so that it puts
	// the host back; kill it only if it does not stop.
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		kill := time.AfterFunc(3*time.Minute, func() { _ = cmd.Process.Kill() })
		defer kill.Stop()
		_ = cmd.Wait() // returns at once if the test waited already
	}()
	ready := make(chan error, 1)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if s.Text() == "ready" {
				ready <- nil
				return
			}
		}
		ready <- fmt.Errorf("the child ended without saying ready: %v", s.Err())
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(kube.ReadyTimeout + time.Minute):
		t.Fatal("the child's cluster did not start")
	}

	// The child's namespaces are those of its first process inside them.
	inits := children(t, cmd.Process.Pid)
	if len(inits) != 1 {
		t.Fatalf("the child's host stage has children %v, want the one first process of its namespaces", inits)
	}
	// Each is held open until the test ends: a namespace's id is freed with
	// it and given to the next one made, and a container the other tests'
	// cluster starts would then be "in the child's namespaces".
	namespaces := map[string]string{}
	for _, ns := range []string{"pid", "net", "mnt"} {
		path := fmt.Sprintf("/proc/%d/ns/%s", inits[0], ns)
		held, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		if namespaces[ns], err = os.Readlink(path); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(processesIn(t, namespaces["pid"], "pid")); n < 5 {
		t.Fatalf("%d processes in the child's PID namespace, want its whole cluster", n)
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	var exit *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &exit) || exit.ExitCode() != 130 {
		t.Fatalf("the child ended with %v, want exit status 130", err)
	}
	for ns, id := range namespaces {
		if left := processesIn(t, id, ns); len(left) > 0 {
			t.Errorf("processes %v are still in the child's %s namespace %s", left, ns, id)
		}
	}
	for _, d := range kube.CgroupDirs(kube.CgroupRootOf(cmd.Process.Pid)) {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the child's cgroup %s is still there (%v)", d, err)
		}
	}
	if after := kube.Sysctls(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("sysctls were %v, are %v after the interrupt", before, after)
	}
}

// children are a process's children, started by any of its threads.
func children(t *testing.T, pid int) []int {
	t.Helper()
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, field := range strings.Fields(string(b)) {
			n, err := strconv.Atoi(field)
			if err != nil {
				t.Fatal(err)
			}
			pids = append(pids, n)
		}
	}
	return pids
}

// processesIn lists the processes whose namespace of this kind (pid, net,
// mnt) is id.
func processesIn(t *testing.T, id, kind string) []string {
	t.Helper()
	entries, err := filepath.Glob("/proc/[0-9]*/ns/" + kind)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		if link, err := os.Readlink(e); err == nil && link == id {
			found = append(found, strings.Split(e, "/")[2])
		}
	}
	return found
}
