package stack

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill the process if its parent dies, even by
// SIGKILL, so no process outlives `make run` or a test.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
