//go:build unix && !linux

package stack

import (
	"os/exec"
	"syscall"
	"time"
)

// detach puts the process in a process group of its own, so a Ctrl-C in the
// terminal reaches only the runner, which then stops everything in order.
// Outside Linux nothing kills it if the runner itself is killed.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// stopped cannot be read outside Linux: Freeze gives the signal a moment.
func stopped(int) bool {
	time.Sleep(100 * time.Millisecond)
	return true
}
