//go:build !linux

package stack

import "os/exec"

// dieWithParent has no equivalent outside Linux: Stop ends the processes.
func dieWithParent(*exec.Cmd) {}
