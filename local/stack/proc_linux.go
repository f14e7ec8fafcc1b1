package stack

import (
	"os/exec"
	"syscall"
)

// detach puts the process in a process group of its own, so a Ctrl-C in the
// terminal reaches only the runner, which then stops everything in order;
// and the kernel kills the process if its parent dies, even by SIGKILL, so
// nothing outlives `make run` or a test.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
