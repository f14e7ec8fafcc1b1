package kube

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// stopTimeout bounds a component's graceful stop before it is killed.
const stopTimeout = 10 * time.Second

// A process is one control-plane component, its output kept in a log file.
type process struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// start runs bin with args, logging to dir/name.log. The process gets a
// process group of its own, so a Ctrl-C in the terminal reaches only the
// harness, which then stops everything in order; and the kernel kills it if
// the harness dies, even by SIGKILL, so nothing outlives a test run.
func start(dir, name, bin string, env []string, args ...string) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return startCmd(dir, name, cmd)
}

// startCmd starts cmd, logging to dir/name.log (after what an earlier run
// of the same name logged: a node's agents start again when it comes back).
func startCmd(dir, name string, cmd *exec.Cmd) (*process, error) {
	log := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create the log of %s: %w", name, err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, log: log, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop asks the process to end (SIGTERM) and kills it after stopTimeout.
func (p *process) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s: killed", p.name, stopTimeout)
	}
}

// exited returns an error saying the process ended, with the end of its
// log, or nil while it runs.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); the end of its log:\n%s", p.name, p.err, tail(p.log, 20))
	default:
		return nil
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// poll calls check every 200 ms until it returns nil, ctx ends, or one of
// procs exits; the error says what was awaited and the last failure.
func poll(ctx context.Context, what string, procs []*process, check func(context.Context) error) error {
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		for _, p := range procs {
			if err := p.exited(); err != nil {
				return fmt.Errorf("waiting for %s: %w", what, err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %w)", what, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
