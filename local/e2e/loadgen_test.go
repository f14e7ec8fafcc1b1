package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/micro/kubernetes/local/stack"
	"github.com/micro/kubernetes/pkg/k8s"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
)

// The load generator, in both modes, against the real binaries.
func TestLoadgen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root, err := stack.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	loadgen := filepath.Join(t.TempDir(), "loadgen")
	build := exec.CommandContext(ctx, "go", "build", "-o", loadgen, "./loadgen")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building loadgen: %v\n%s", err, out)
	}
	s := startStack(t)
	for mode, args := range map[string][]string{
		"http": {"-url=" + s.Ports.URL() + "/greeter?name=load"},
		"rpc":  {"-rpc=" + greeterv1.ServiceName},
	} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.CommandContext(ctx, loadgen, append(args, "-rate=0", "-workers=4", "-requests=200", "-wait=5s", "-json")...)
			cmd.Env = append(cmd.Environ(), k8s.EnvAddresses+"="+greeterv1.ServiceName+"="+s.Ports.GreeterAddress())
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("loadgen: %v\n%s", err, out)
			}
			var r struct {
				Requests, Errors int
				Throughput       float64
				P99              int64 `json:"p99_ns"`
			}
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("loadgen's JSON: %v\n%s", err, out)
			}
			if r.Requests != 200 || r.Errors != 0 || r.Throughput <= 0 || r.P99 <= 0 {
				t.Fatalf("loadgen reported %+v, want 200 requests without error", r)
			}
			t.Logf("%+v", r)
		})
	}
}
