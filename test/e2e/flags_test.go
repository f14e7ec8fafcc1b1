package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHelpListsTheFlagsAndExits(t *testing.T) {
	cases := map[string][]string{
		"greeter": {"--server_address", "--selector"},
		"health":  {"--health_address", "--health_timeout", "--server_name", "--server_address"},
		"web":     {"--server_address", "--greeter_timeout"},
		"api":     {"--server_address", "--call_timeout", "--config_file"},
	}
	for name, flags := range cases {
		t.Run(name, func(t *testing.T) {
			out, err := runFor(t, 10*time.Second, name, "--help")
			if err != nil {
				t.Fatalf("%s --help: %v\n%s", name, err, out)
			}
			for _, f := range flags {
				if !strings.Contains(out, f) {
					t.Errorf("%s --help does not list %s", name, f)
				}
			}
		})
	}
}

// The binaries here are not stamped (make build and the images are), so
// they say "dev"; and --help lists the flag.
func TestVersionIsPrintedAndExits(t *testing.T) {
	for _, name := range []string{"greeter", "health", "web", "api"} {
		t.Run(name, func(t *testing.T) {
			out, err := runFor(t, 10*time.Second, name, "--version")
			if err != nil {
				t.Fatalf("%s --version: %v\n%s", name, err, out)
			}
			if want := name + " version dev\n"; out != want {
				t.Errorf("%s --version said %q, want %q", name, out, want)
			}
			help, _ := runFor(t, 10*time.Second, name, "--help")
			if !strings.Contains(help, "--version") {
				t.Errorf("%s --help does not list --version", name)
			}
		})
	}
}

func TestBadConfigurationFailsWithAMessage(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"health", nil, "--server_name (MICRO_SERVER_NAME) is required"},
		{"health", []string{"--server_name=greeter", "--health_timeout=0s"}, "must be positive"},
		{"web", []string{"--greeter_timeout=-1s"}, "must be positive"},
		{"api", []string{"--call_timeout=0s"}, "must be positive"},
		{"greeter", []string{"--selector=nope"}, "Selector nope not found"},
	}
	for _, c := range cases {
		t.Run(c.name+" "+strings.Join(c.args, " "), func(t *testing.T) {
			out, err := runFor(t, 10*time.Second, c.name, c.args...)
			if err == nil {
				t.Fatalf("%s %v exited 0, want a failure\n%s", c.name, c.args, out)
			}
			if !strings.Contains(out, c.want) {
				t.Fatalf("%s %v said %q, want %q", c.name, c.args, out, c.want)
			}
		})
	}
}

// runFor runs one of the built binaries, killed if it outlives limit.
func runFor(t *testing.T, limit time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(bin, name), args...).CombinedOutput()
	return string(out), err
}
