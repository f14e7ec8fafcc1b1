package images_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// podman runs podman with storage of its own in a temporary directory, so
// the tests never touch the machine's images or containers, and serves the
// Docker API on a socket there for skaffold's ko builder to load images.
type podman struct {
	global  []string
	socket  string
	service *exec.Cmd
}

// startPodman starts podman's API service with storage in dir. The flags are
// what works on hosts like CI's (K8S-TOOLING.md): runc (crun fails on hybrid
// cgroups), vfs storage, cgroupfs, events in a file.
func startPodman(dir string) (*podman, error) {
	for _, bin := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s is not installed: make test-images installs it (apt-get install podman runc)", bin)
		}
	}
	p := &podman{
		global: []string{
			"--root=" + filepath.Join(dir, "storage"), "--runroot=" + filepath.Join(dir, "run"),
			"--storage-driver=vfs", "--runtime=runc", "--cgroup-manager=cgroupfs", "--events-backend=file",
		},
		socket: filepath.Join(dir, "podman.sock"),
	}
	log, err := os.Create(filepath.Join(dir, "podman-service.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	p.service = exec.Command("podman", append(p.global, "system", "service", "--time=0", "unix://"+p.socket)...)
	p.service.Stdout, p.service.Stderr = log, log
	// Killed with the tests, even by SIGKILL.
	p.service.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.service.Start(); err != nil {
		return nil, fmt.Errorf("start podman's service: %w", err)
	}
	client := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", p.socket)
	}}}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := client.Get("http://podman/_ping")
		if err == nil {
			resp.Body.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("podman's service did not answer within 30s: %w", err)
		}
	}
}

// dockerHost is the Docker API address for skaffold.
func (p *podman) dockerHost() string { return "unix://" + p.socket }

// run runs a podman command and returns its standard output, trimmed; the
// error carries its standard error.
func (p *podman) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "podman", append(p.global, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// start runs a container: podman run with args. The limits are set
// because runc cannot raise them from inside this sandbox; they are above
// what the services use.
func (p *podman) start(ctx context.Context, args ...string) (string, error) {
	return p.run(ctx, append([]string{"run", "--ulimit=nofile=4096:4096", "--ulimit=nproc=4096:4096"}, args...)...)
}

// logs returns what a container wrote, on both its outputs.
func (p *podman) logs(ctx context.Context, name string) (string, error) {
	out, err := exec.CommandContext(ctx, "podman", append(p.global, "logs", name)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("podman logs %s: %w: %s", name, err, out)
	}
	return string(out), nil
}

// stop removes every container and stops the service.
func (p *podman) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := p.run(ctx, "rm", "--force", "--all", "--time=1")
	_ = p.service.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.service.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.service.Process.Kill()
		err = errors.Join(err, <-done)
	}
	return err
}
