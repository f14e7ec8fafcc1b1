package kube

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// DialerOn returns a dial function whose connections start in the network
// namespace of the node named name, as its kubelet's do: a NetworkPolicy
// enforcer lets a pod's own node reach it whatever the policies say (the
// probes come from there), and no other node.
func (c *Cluster) DialerOn(name string) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	n, err := c.node(name)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{}
	if !n.ownNetwork {
		return dialer.DialContext, nil
	}
	ns := "/proc/" + strconv.Itoa(n.holder.cmd.Process.Pid) + "/ns/net"
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type dialed struct {
			conn net.Conn
			err  error
		}
		result := make(chan dialed, 1)
		// A socket stays in the namespace it was made in: make it on a
		// thread of its own moved there, then move the thread back.
		go func() {
			runtime.LockOSThread()
			own, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
			if err != nil {
				runtime.UnlockOSThread()
				result <- dialed{nil, err}
				return
			}
			defer own.Close()
			if err := setns(ns); err != nil {
				runtime.UnlockOSThread()
				result <- dialed{nil, err}
				return
			}
			conn, err := dialer.DialContext(ctx, network, addr)
			// A thread that cannot go back stays locked: it ends with the
			// goroutine, and no other goroutine runs on it.
			if unix.Setns(int(own.Fd()), unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
			result <- dialed{conn, err}
		}()
		r := <-result
		return r.conn, r.err
	}, nil
}

// setns moves the calling thread into the network namespace at path.
func setns(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter the network namespace %s: %w", path, err)
	}
	return nil
}
