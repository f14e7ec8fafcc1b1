package stack

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// detach puts the process in a process group of its own, so a Ctrl-C in the
// terminal reaches only the runner, which then stops everything in order;
// and the kernel kills the process if its parent dies, even by SIGKILL, so
// nothing outlives `make run` or a test.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// stopped says whether the process is stopped (by SIGSTOP): the state field
// of /proc/<pid>/stat is T.
func stopped(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'T'
}
