package k8s

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestMemoryLimitIsAFractionOfTheContainers(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		os.Unsetenv("GOMEMLIMIT")
		t.Cleanup(func() { os.Setenv("GOMEMLIMIT", v) })
	}

	t.Setenv(EnvMemoryLimit, "134217728") // 128 MiB, as the downward API gives it
	if err := SetMemoryLimit(); err != nil {
		t.Fatal(err)
	}
	if got, want := debug.SetMemoryLimit(-1), int64(134217728/100*MemoryLimitPercent); got != want {
		t.Errorf("memory limit %d, want %d", got, want)
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
}
