// Package natstest runs a real NATS server with JetStream on loopback for
// tests: the one tools/nats-server pins, built once into the tools cache.
package natstest

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is a running NATS server.
type Server struct {
	// URL is what clients connect to: nats://127.0.0.1:port.
	URL string
	cmd *exec.Cmd
	bin string
	// args start it again on the same port and data (Restart).
	args []string
}

// Start runs a NATS server with JetStream, its data in a folder of the
// test's, until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{bin: binary(t)}
	ports := freePorts(t, 2)
	port, monitor := ports[0], ports[1]
	s.URL = "nats://127.0.0.1:" + port
	s.args = []string{"--addr=127.0.0.1", "--port=" + port, "--http_port=" + monitor, "--jetstream", "--store_dir=" + t.TempDir()}
	s.start(t, "http://127.0.0.1:"+monitor+"/healthz")
	t.Cleanup(s.Stop)
	return s
}

// Stop stops the server (SIGTERM: it writes what it holds and exits).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts a stopped server again, on its port and its data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	var monitor string
	for _, a := range s.args {
		if p, ok := strings.CutPrefix(a, "--http_port="); ok {
			monitor = p
		}
	}
	s.start(t, "http://127.0.0.1:"+monitor+"/healthz")
}

func (s *Server) start(t testing.TB, health string) {
	t.Helper()
	s.cmd = exec.Command(s.bin, s.args...)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if rsp, err := http.Get(health); err == nil {
			rsp.Body.Close()
			if rsp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("NATS did not start in 10 s")
		}
	}
}

// binary builds (once per version, into the tools cache) and finds the
// pinned server, through the repository's tools/ command.
func binary(t testing.TB) string {
	t.Helper()
	work, err := exec.Command("go", "env", "GOWORK").Output()
	if err != nil || strings.TrimSpace(string(work)) == "" || strings.TrimSpace(string(work)) == "off" {
		t.Fatalf("not inside the repository's Go workspace (go env GOWORK: %q, %v)", work, err)
	}
	build := exec.Command("go", "run", ".", "nats-server")
	build.Dir = filepath.Join(filepath.Dir(strings.TrimSpace(string(work))), "tools")
	build.Env = append(os.Environ(), "GOWORK=off")
	var stderr bytes.Buffer
	build.Stderr = &stderr
	out, err := build.Output()
	if err != nil {
		t.Fatalf("building the NATS server (tools/nats-server): %v\n%s", err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}

// freePorts are n loopback ports free now, below the ephemeral range so
// that no outgoing connection takes one before the server binds it.
func freePorts(t testing.TB, n int) []string {
	t.Helper()
	var ports []string
	for p := 20000 + time.Now().Nanosecond()%10000; p < 32768 && len(ports) < n; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		defer l.Close() // held until all are found
		ports = append(ports, strconv.Itoa(p))
	}
	if len(ports) < n {
		t.Fatal("no free loopback ports")
	}
	return ports
}
