package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/micro/kubernetes/pkg/k8s"
)

// The greeting and the title follow the config file while the application
// runs (as a mounted ConfigMap changes); a bad change is refused.
func TestConfigurationChangesWithoutARestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.json")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"greeter": {"greeting": "Hello {name}"}, "web": {"title": "First title"}}`)
	s := startStackWith(t, file)
	pids := []int{s.Pid("greeter"), s.Pid("web")}

	expect := func(greeting, title string) {
		t.Helper()
		deadline := time.Now().Add(3 * k8s.ConfigReloadInterval)
		for {
			g := get(t, "GET", s.Ports.URL()+"/greeter?name=Ada")
			p := get(t, "GET", s.Ports.URL()+"/")
			if strings.Contains(g.body, greeting) && strings.Contains(p.body, "<title>"+title+"</title>") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("want %q and title %q; got %s and a page without it", greeting, title, g.body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	expect("Hello Ada", "First title")

	write(`{"greeter": {"greeting": "Good day, {name}."}, "web": {"title": "Second title"}}`)
	expect("Good day, Ada.", "Second title")

	write(`{"greeter": {"greeting": "no placeholder"}, "web": {"title": 42}}`)
	time.Sleep(2 * k8s.ConfigReloadInterval)
	expect("Good day, Ada.", "Second title")

	if now := []int{s.Pid("greeter"), s.Pid("web")}; now[0] != pids[0] || now[1] != pids[1] {
		t.Fatalf("processes restarted: %v -> %v", pids, now)
	}
}

func TestInvalidConfigurationFailsAtStart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(file, []byte(`{"greeter": {"greeting": "Hi"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(bin, "greeter"), "--config_file="+file, "--server_address=127.0.0.1:0", "--metrics_address=").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "must hold {name} exactly once") {
		t.Fatalf("greeter with a bad configuration: %v\n%s", err, out)
	}
}
