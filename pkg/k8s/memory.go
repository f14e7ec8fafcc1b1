package k8s

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
)

const (
	// EnvMemoryLimit is the container's memory limit in bytes, which the
	// manifests give every container from the downward API
	// (resourceFieldRef: limits.memory).
	EnvMemoryLimit = "MICRO_MEMORY_LIMIT"
	// MemoryLimitPercent of the container's limit is the Go runtime's soft
	// memory limit: the runtime counts its heap, stacks and own structures,
	// not the kernel's memory charged to the container (socket buffers,
	// page cache of files read) nor the binary's mapped text; the tenth
	// left is for those. Near the limit the GC runs harder, instead of the
	// heap growing into the OOM killer.
	MemoryLimitPercent = 90
	// GCPercent is the collector's pacing (GOGC) under a memory limit. Go's
	// default, 100, collects whenever the heap reaches 4 MiB: these services
	// keep a MiB or two alive, most of it go-micro's own, so a busy one
	// collected every few hundred requests, a fifth of its CPU
	// (docs/performance.md). 400 first collects at 16 MiB, an eighth of the
	// pods' 128 MiB, and lets the heap grow to five times what is alive;
	// the memory limit still bounds it.
	GCPercent = 400
)

// SetMemoryLimit gives the Go runtime a memory limit of MemoryLimitPercent
// of EnvMemoryLimit, unless GOMEMLIMIT is set (the runtime has applied it
// already and it wins) or the variable is not (no limit known); under a
// limit, the collector's pacing is GCPercent, unless GOGC says otherwise. A
// main calls it first thing; a value that is not a positive number of bytes
// is an error, not ignored.
func SetMemoryLimit() error {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		setGCPercent()
		return nil
	}
	v, ok := os.LookupEnv(EnvMemoryLimit)
	if !ok {
		return nil
	}
	limit, err := strconv.ParseInt(v, 10, 64)
	if err != nil || limit <= 0 {
		return fmt.Errorf("%s=%q: want the container's memory limit, a positive number of bytes", EnvMemoryLimit, v)
	}
	debug.SetMemoryLimit(SoftMemoryLimit(limit))
	setGCPercent()
	return nil
}

// SoftMemoryLimit is the Go runtime's memory limit for a container's
// limit, both in bytes: MemoryLimitPercent of it.
func SoftMemoryLimit(containerLimit int64) int64 { return containerLimit / 100 * MemoryLimitPercent }

// setGCPercent paces the collector by GCPercent, unless GOGC is set (the
// runtime has applied it already and it wins).
func setGCPercent() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(GCPercent)
	}
}

// memoryLimit is the runtime's memory limit for the start-up line, or
// nothing when there is none.
func memoryLimit() []any {
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		return []any{slog.Int64("memory_limit", l)}
	}
	return nil
}
