package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// cpusApart runs pids on the machine's last CPU and this test process, the
// load generator, on the others, until the test ends: a client and a
// server on cores of their own, as on two machines, so that a load the
// server cannot carry does not also starve the client that measures it.
// With one CPU they share it, and the test says so.
func cpusApart(t *testing.T, pids ...int) {
	t.Helper()
	n := runtime.NumCPU()
	if n < 2 {
		t.Log("one CPU: the load generator shares it with the application")
		return
	}
	var app, generator, all unix.CPUSet
	app.Set(n - 1)
	for i := range n {
		all.Set(i)
		if i < n-1 {
			generator.Set(i)
		}
	}
	t.Cleanup(func() {
		if err := pin(os.Getpid(), all); err != nil {
			t.Error(err)
		}
	})
	for _, pid := range pids {
		if err := pin(pid, app); err != nil {
			t.Fatal(err)
		}
	}
	if err := pin(os.Getpid(), generator); err != nil {
		t.Fatal(err)
	}
}

// pin sets the CPUs of every thread of pid. Twice: a thread started during
// the first pass by one not yet pinned is caught by the second.
func pin(pid int, set unix.CPUSet) error {
	for range 2 {
		tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
		if err != nil {
			return fmt.Errorf("the threads of %d: %w", pid, err)
		}
		for _, task := range tasks {
			tid, err := strconv.Atoi(task.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("pinning thread %d of %d: %w", tid, pid, err)
			}
		}
	}
	return nil
}
