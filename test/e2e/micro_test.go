package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The micro toolkit (go-micro's CLI with pkg/k8s's defaults) against the
// stack's processes: its call reaches the greeter by name, and bad input
// gives go-micro's error and a non-zero exit, never a hang or a stack.
func TestMicroCall(t *testing.T) {
	s := startStack(t)
	bin, env, ok := s.Micro()
	if !ok {
		t.Fatal("the stack built no micro toolkit")
	}
	micro := func(t *testing.T, args ...string) (stdout, stderr string, code int, took time.Duration) {
		return runMicro(t, bin, env, args...)
	}
	for _, c := range []struct {
		name string
		args []string
		code int
		out  string // in stdout for code 0, else in stderr
	}{
		{"a greeting", []string{"call", "greeter", "Greeter.Hello", `{"name":"Ada"}`}, 0, `{"message":"Hello Ada"}` + "\n"},
		{"the health check", []string{"call", "greeter", "Debug.Health", `{}`}, 0, `{"status":"ok"}` + "\n"},
		{"the greeter's own error", []string{"call", "greeter", "Greeter.Hello", `{}`}, 1, `"code":400,"detail":"name must not be empty"`},
		{"malformed JSON", []string{"call", "greeter", "Greeter.Hello", `{"name":`}, 1, `"code":400,"detail":"request does not decode as greeter.v1.HelloRequest`},
		{"an unknown endpoint", []string{"call", "greeter", "Greeter.Goodbye", `{}`}, 1, `"code":501,"detail":"unknown service Greeter.Goodbye"`},
		{"an unknown service", []string{"call", "nosuch", "Nosuch.Hello", `{}`}, 1, `"code":503`},
		{"no endpoint", []string{"call", "greeter"}, 1, "usage: [service] [endpoint] [request]"},
		{"a command that needs a registry", []string{"services"}, 2, "micro services reads go-micro's registry"},
		{"a command this toolkit has not", []string{"run"}, 2, `micro: no command "run"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, code, _ := micro(t, c.args...)
			got := stderr
			if c.code == 0 {
				got = stdout
			}
			if code != c.code || !strings.Contains(got, c.out) || strings.Contains(stderr, "goroutine ") {
				t.Errorf("micro %s: exit %d, stdout %q, stderr %q; want exit %d and %q", strings.Join(c.args, " "), code, stdout, stderr, c.code, c.out)
			}
		})
	}

	// A greeter that hangs: the call's timeout, set on the command line,
	// reaches the client that calls.
	if err := s.Freeze("greeter"); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Signal("greeter", syscall.SIGCONT) }()
	args := []string{"--client_request_timeout=1s", "call", "greeter", "Greeter.Hello", `{}`}
	_, stderr, code, took := micro(t, args...)
	t.Logf("micro %s against a hung greeter: exit %d after %v: %s", strings.Join(args, " "), code, took.Round(time.Millisecond), stderr)
	if code == 0 || !strings.Contains(stderr, `"code":408`) || took > 1500*time.Millisecond {
		t.Errorf("against a hung greeter: exit %d after %v, %q; want go-micro's 408 and a non-zero exit within 1.5 s", code, took, stderr)
	}
}

// runMicro runs the toolkit with env added to its environment (see
// stack.Micro), and returns its output, its exit code and how long it took.
func runMicro(t *testing.T, bin, env string, args ...string) (stdout, stderr string, code int, took time.Duration) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = append(os.Environ(), env)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	took = time.Since(start)
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running %s: %v", filepath.Base(bin), err)
	}
	return out.String(), errOut.String(), code, took
}
