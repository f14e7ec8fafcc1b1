package k8s

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestMemoryLimitIsAFractionOfTheContainers(t *testing.T) {
	before, pacing := debug.SetMemoryLimit(-1), debug.SetGCPercent(-1)
	debug.SetGCPercent(pacing)
	t.Cleanup(func() { debug.SetMemoryLimit(before); debug.SetGCPercent(pacing) })
	for _, name := range []string{"GOMEMLIMIT", "GOGC"} {
		if v, ok := os.LookupEnv(name); ok {
			os.Unsetenv(name)
			t.Cleanup(func() { os.Setenv(name, v) })
		}
	}

	t.Setenv(EnvMemoryLimit, "134217728") // 128 MiB, as the downward API gives it
	if err := SetMemoryLimit(); err != nil {
		t.Fatal(err)
	}
	if got, want := debug.SetMemoryLimit(-1), int64(134217728/100*MemoryLimitPercent); got != want {
		t.Errorf("memory limit %d, want %d", got, want)
	}
	if got := debug.SetGCPercent(pacing); got != GCPercent {
		t.Errorf("under a memory limit the GC percent is %d, want %d", got, GCPercent)
	}
	for _, bad := range []string{"", "128Mi", "-1", "0", "1e9"} {
		t.Setenv(EnvMemoryLimit, bad)
		if err := SetMemoryLimit(); err == nil {
			t.Errorf("%s=%q was accepted", EnvMemoryLimit, bad)
		}
	}

	// GOMEMLIMIT, set by hand, wins: the runtime applied it at start.
	debug.SetMemoryLimit(before)
	t.Setenv("GOMEMLIMIT", "64MiB")
	t.Setenv(EnvMemoryLimit, "134217728")
	if err := SetMemoryLimit(); err != nil || debug.SetMemoryLimit(-1) != before {
		t.Errorf("with GOMEMLIMIT set: %v, limit %d, want it left alone", err, debug.SetMemoryLimit(-1))
	}

	// So does GOGC; and with no limit known, the pacing is Go's.
	debug.SetGCPercent(pacing)
	t.Setenv("GOGC", "150")
	if err := SetMemoryLimit(); err != nil || debug.SetGCPercent(pacing) != pacing {
		t.Errorf("with GOGC set: %v, want the GC percent left alone", err)
	}
	os.Unsetenv("GOGC")
	os.Unsetenv("GOMEMLIMIT")
	os.Unsetenv(EnvMemoryLimit)
	if err := SetMemoryLimit(); err != nil || debug.SetGCPercent(pacing) != pacing {
		t.Errorf("without a limit: %v, want the GC percent left alone", err)
	}
}
