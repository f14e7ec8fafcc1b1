package kube

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// cgroupHierarchies are where the host mounts its cgroup hierarchies: on
// these machines v1 (cpu, memory, ..., name=systemd) and the empty v2
// "unified" one. The kubelet's cgroupfs driver and runc make their cgroups
// under root in each. cgroups are host-wide: no namespace hides them.
func cgroupHierarchies() ([]string, error) {
	hs, err := mountedHierarchies()
	dirs := make([]string, len(hs))
	for i, h := range hs {
		dirs[i] = h.dir
	}
	return dirs, err
}

// hierarchy is a mounted cgroup hierarchy and the controllers it has.
type hierarchy struct {
	dir         string
	controllers []string
}

func mountedHierarchies() ([]hierarchy, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var hs []hierarchy
	s := bufio.NewScanner(f)
	for s.Scan() {
		// ... mount-point ... - fstype source super-options
		fields := strings.Fields(s.Text())
		sep := slices.Index(fields, "-")
		if sep > 4 && sep+3 < len(fields) && (fields[sep+1] == "cgroup" || fields[sep+1] == "cgroup2") {
			hs = append(hs, hierarchy{dir: fields[4], controllers: strings.Split(fields[sep+3], ",")})
		}
	}
	if len(hs) == 0 {
		return nil, errors.New("no cgroup v1 hierarchy is mounted: the cluster tier knows only the hybrid layout of these machines")
	}
	return hs, s.Err()
}

// SystemCgroup is where the cluster's own processes run, beside the nodes'
// pods under root (NodeCgroupRoot): the control plane, each node's
// kubelet, containerd and kube-proxy, and the tests with their load. Its
// CPU weight is the default, as systemd gives system.slice on a real
// node, and so is each node's: the pods of the three nodes weigh three
// times what all the cluster's own processes weigh together. Left beside
// them in the host's root cgroup, each busy thread of those processes
// would weigh as much as all the pods together, and a busy control plane
// could hold back the pods for seconds.
func SystemCgroup(root string) string { return root + "/system" }

// joinSystemCgroup moves the calling process, with its threads, into the
// system cgroup in the hierarchies that weigh CPU time; the processes it
// starts afterwards are born there. In the others it stays where it was:
// its memory, say, is still counted where the host counts it.
func joinSystemCgroup(root string) error {
	hs, err := mountedHierarchies()
	if err != nil {
		return err
	}
	for _, h := range hs {
		if !slices.Contains(h.controllers, "cpu") && !slices.Contains(h.controllers, "cpuacct") {
			continue
		}
		// Writing 0 moves the writer's whole thread group.
		procs := filepath.Join(h.dir, SystemCgroup(root), "cgroup.procs")
		if err := os.WriteFile(procs, []byte("0"), 0o644); err != nil {
			return fmt.Errorf("join the cgroup %s: %w", filepath.Dir(procs), err)
		}
	}
	return nil
}

// makeCgroups makes root in every hierarchy. A cpuset cgroup takes no task
// until it has CPUs and memory nodes: it gets its parent's.
func makeCgroups(root string) error {
	dirs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, d := range dirs {
		cg := filepath.Join(d, root)
		if err := os.Mkdir(cg, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("make the cgroup %s: %w", cg, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			b, err := os.ReadFile(filepath.Join(d, f))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err == nil {
				err = os.WriteFile(filepath.Join(cg, f), b, 0o644)
			}
			if err != nil {
				return fmt.Errorf("give %s its parent's %s: %w", cg, f, err)
			}
		}
	}
	return nil
}

// removeCgroups removes root and every cgroup under it, in every hierarchy,
// deepest first. It retries for a while: the processes of a PID namespace
// whose first process has just exited are still being killed.
func removeCgroups(root string) error {
	dirs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		last = nil
		for _, d := range dirs {
			if err := removeTree(filepath.Join(d, root)); err != nil {
				last = err
			}
		}
		if last == nil {
			return nil
		}
	}
	return last
}

// removeTree removes a cgroup and its children (cgroup files cannot be
// removed, only the directories).
func removeTree(cg string) error {
	var tree []string
	err := filepath.WalkDir(cg, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			tree = append(tree, p)
		}
		return err
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, p := range slices.Backward(tree) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove the cgroup %s: %w", p, err)
		}
	}
	return nil
}
