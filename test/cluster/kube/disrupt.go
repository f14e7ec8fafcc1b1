package kube

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"syscall"
)

// LoseNode makes the node named name fail as a machine whose network and
// agents fail at once: its link to the other nodes goes down first (both
// ways: its pods neither answer nor close their connections), then its
// kubelet, containerd, kube-proxy and kube-router are killed. Its pods'
// processes run on, cut off, until the node comes back (RestoreNode) and its
// kubelet stops those the cluster has deleted meanwhile. The first node,
// which holds the control plane, cannot be lost.
func (c *Cluster) LoseNode(name string) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	if !n.ownNetwork {
		return fmt.Errorf("%s holds the control plane: lose another node", name)
	}
	if out, err := exec.Command("ip", "link", "set", "v-"+n.name, "down").CombinedOutput(); err != nil {
		return fmt.Errorf("cut %s off: %w: %s", name, err, out)
	}
	c.mu.Lock()
	procs := n.procs
	n.procs = nil
	c.procs = slices.DeleteFunc(c.procs, func(p *process) bool { return slices.Contains(procs, p) })
	c.mu.Unlock()
	var errs []error
	for _, p := range slices.Backward(procs) {
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill %s: %w", p.name, err))
		}
		<-p.done
	}
	return errors.Join(errs...)
}

// RestoreNode brings a lost node back: its link up, its agents started
// again (kube-router too if the policies are enforced), and returns once it
// is Ready, with the sysctls its kubelet rewrote put back.
func (c *Cluster) RestoreNode(ctx context.Context, name string) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	if out, err := exec.Command("ip", "link", "set", "v-"+n.name, "up").CombinedOutput(); err != nil {
		return fmt.Errorf("connect %s again: %w: %s", name, err, out)
	}
	if err := c.startNodeProcesses(ctx, n); err != nil {
		return err
	}
	c.mu.Lock()
	enforcing := c.enforcing
	c.mu.Unlock()
	if enforcing {
		if err := c.startPolicyEnforcer(n); err != nil {
			return err
		}
	}
	if err := poll(ctx, name+" to be Ready again", n.procs, func(ctx context.Context) error { return c.NodeReady(ctx, name) }); err != nil {
		return err
	}
	return restoreSysctls(c.Host.Sysctls)
}
