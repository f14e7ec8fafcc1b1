package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/micro/kubernetes/pkg/k8s"
)

// The gateway calls the real greeter over gRPC for the endpoints the
// configuration allows, with the web's errors for the rest.
func TestAPIGateway(t *testing.T) {
	s := startStack(t)
	url := s.Ports.APIURL()
	for _, c := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/greeter/Greeter.Hello", `{"name":"Ada"}`, 200, `{"message":"Hello Ada"}`},
		{"POST", "/greeter/Greeter.Hello", `{"name":""}`, 400, "must not be empty"},
		{"POST", "/greeter/Greeter.Hello", `{"name":"` + strings.Repeat("x", 101) + `"}`, 400, "at most 100 characters"},
		{"POST", "/greeter/Greeter.Hello", "{\"name\":\"\xff\"}", 400, "UTF-8"},
		{"POST", "/greeter/Greeter.Hello", `{"name":"Ada","age":3}`, 400, "age"},
		{"POST", "/greeter/Greeter.Hello", `"Ada"`, 400, "JSON object"},
		{"POST", "/greeter/Greeter.Hello", strings.Repeat(" ", k8s.MaxMessageSize+1), 413, "over"},
		{"GET", "/greeter/Greeter.Hello", ``, 405, "POST"},
		{"POST", "/greeter/Debug.Health", `{}`, 404, "no such endpoint"},
		{"POST", "/greeter/grpc.health.v1.Health.Check", `{}`, 404, "no such endpoint"},
		{"POST", "/web/Greeter.Hello", `{}`, 404, "no such endpoint"},
		{"GET", "/", ``, 404, "no such path"},
	} {
		a := send(t, c.method, url+c.path, c.body)
		if a.status != c.status || !strings.Contains(a.body, c.want) || a.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s %.40q: %d %s %s, want %d JSON containing %q", c.method, c.path, c.body, a.status, a.header.Get("Content-Type"), a.body, c.status, c.want)
		}
	}

	// With the greeter gone, nothing answers: 503, at once.
	if err := s.Signal("greeter", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait("greeter", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if a := send(t, "POST", url+"/greeter/Greeter.Hello", `{"name":"Ada"}`); a.status != 503 || !strings.Contains(a.body, "unavailable") {
		t.Errorf("with the greeter down: %d %s, want 503", a.status, a.body)
	}
}

// The allow-list follows the config file while the gateway runs, as the
// others' configuration does.
func TestAPIGatewayAllowListChangesWithoutARestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.json")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"greeter": {"greeting": "Hello {name}"}, "api": {"allow": {}}}`)
	s := startStackWith(t, file)
	pid := s.Pid("api")
	expect := func(status int) {
		t.Helper()
		var a answer
		for deadline := time.Now().Add(3 * k8s.ConfigReloadInterval); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if a = send(t, "POST", s.Ports.APIURL()+"/greeter/Greeter.Hello", `{"name":"Ada"}`); a.status == status {
				return
			}
		}
		t.Fatalf("Greeter.Hello through the gateway: %d %s, want %d", a.status, a.body, status)
	}
	expect(404)
	write(`{"greeter": {"greeting": "Hello {name}"}, "api": {"allow": {"greeter": ["Greeter.Hello"]}}}`)
	expect(200)
	// A list exposing the cluster's own endpoints is refused; the last good
	// one stays.
	write(`{"greeter": {"greeting": "Hello {name}"}, "api": {"allow": {"greeter": ["Debug.Health"]}}}`)
	time.Sleep(2 * k8s.ConfigReloadInterval)
	expect(200)
	if s.Pid("api") != pid {
		t.Fatal("the gateway restarted")
	}
}
