package cluster_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// holdEnv makes the test binary start the control plane and wait for a
// signal instead of running tests.
const holdEnv = "CLUSTER_TEST_HOLD"

// TestInterrupt starts a second control plane in a child test binary,
// interrupts it as Ctrl-C would, and checks that it exits with 130 and
// leaves no process and no file behind.
func TestInterrupt(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the child's pids: %v", err)
	}
	var list, dir string
	if _, err := fmt.Sscanf(line, "pids %s dir %s", &list, &dir); err != nil {
		t.Fatalf("read %q: %v", line, err)
	}
	var pids []int
	for _, f := range strings.Split(list, ",") {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("read %q: %v", line, err)
		}
		pids = append(pids, pid)
	}
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("process %d is not running before the interrupt", pid)
		}
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	var exit *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &exit) || exit.ExitCode() != 130 {
		t.Fatalf("the child ended with %v, want exit status 130", err)
	}
	for _, pid := range pids {
		// The harness waited for each: a process still alive, or a zombie
		// nobody reaped, would show here.
		if alive(pid) {
			t.Errorf("process %d outlived the interrupt", pid)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the control plane's directory %s is still there (%v)", dir, err)
	}
}

// alive says whether a process with this pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
