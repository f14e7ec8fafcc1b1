package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// toolkitProfile is the profile that builds the micro toolkit's image.
const toolkitProfile = "toolkit"

// TestToolkit runs go-micro's micro CLI in the cluster as micro/README.md
// says, with kubectl exec in the toolkit's pod, in a namespace that enforces
// the restricted Pod Security level, under the network policies (its own is
// what lets it through; TestNetworkPolicies leaves the enforcer running). It
// calls the greeter by its Service's name, then gives bad input, calls a hung
// greeter and a stopped one: each must exit non-zero with go-micro's error,
// the last two within their --client_request_timeout and kubectl exec's own
// time (callTimeout, execSlack).
func TestToolkit(t *testing.T) {
	const ns = "toolkit"
	deploy(t, ns, []string{toolkitProfile, policiesProfile})
	if _, err := eventually(t.Context(), time.Minute, func(ctx context.Context) error { return allReady(ctx, ns) }); err != nil {
		t.Fatal(err)
	}
	micro := func(ctx context.Context, args ...string) (call, error) { return execMicro(ctx, ns, args...) }

	// The enforcer programs a new pod's rules after it is Ready: the first
	// call may need a retry (see greetingWithin).
	greet := []string{"call", "greeter", "Greeter.Hello", `{"name":"Ada"}`}
	var first call
	if _, err := eventually(t.Context(), greetingWithin([]string{policiesProfile}), func(ctx context.Context) error {
		var err error
		first, err = micro(ctx, greet...)
		if err != nil || first.out != `{"message":"Hello Ada"}`+"\n" {
			return fmt.Errorf("%v: %q", err, first.out)
		}
		return nil
	}); err != nil {
		t.Fatalf("micro %s: %v", strings.Join(greet, " "), err)
	}
	t.Logf("$ kubectl exec deploy/micro -- micro %s\n%s(exit 0 after %s)", quoted(greet), first.out, first.took.Round(time.Millisecond))

	cases := []struct {
		name string
		args []string
		want string // in the output; exit 0 if it is a JSON object, else not 0
	}{
		{"the health check", []string{"call", "greeter", "Debug.Health", `{}`}, `{"status":"ok"}` + "\n"},
		{"an unknown service", []string{"call", "nosuch", "Nosuch.Hello", `{}`}, `"code":503`},
		{"an unknown endpoint", []string{"call", "greeter", "Greeter.Goodbye", `{}`}, `"code":501,"detail":"unknown service Greeter.Goodbye"`},
		{"malformed JSON", []string{"call", "greeter", "Greeter.Hello", `{"name":`}, `"code":400,"detail":"request does not decode`},
		{"a command that needs a registry", []string{"services"}, "micro services reads go-micro's registry"},
	}
	for _, c := range cases {
		got, err := micro(t.Context(), c.args...)
		ok := strings.HasPrefix(c.want, "{")
		t.Logf("$ kubectl exec deploy/micro -- micro %s\n%s(exit %d after %s)", quoted(c.args), got.out, got.code, got.took.Round(time.Millisecond))
		switch {
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case !strings.Contains(got.out, c.want) || (got.code == 0) != ok || strings.Contains(got.out, "goroutine "):
			t.Errorf("%s: exit %d, %q; want %q and exit %s", c.name, got.code, got.out, c.want, map[bool]string{true: "0", false: "not 0"}[ok])
		}
	}

	// A hung greeter (every replica's process stopped, their connections
	// open): the call's timeout on the command line bounds it.
	args := []string{"--client_request_timeout=" + callTimeout.String(), "call", "greeter", "Greeter.Hello", `{}`}
	greeters := livePods(t, ns, "greeter")
	for _, p := range greeters {
		if err := syscall.Kill(pidOf(t, p, "greeter"), syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	got, err := micro(t.Context(), args...)
	for _, p := range greeters {
		if err := syscall.Kill(pidOf(t, p, "greeter"), syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("$ kubectl exec deploy/micro -- micro %s   # every greeter stopped with SIGSTOP\n%s(exit %d after %s)", quoted(args), got.out, got.code, got.took.Round(time.Millisecond))
	if err != nil || got.code == 0 || !strings.Contains(got.out, `"code":408`) || got.took > callTimeout+execSlack {
		t.Errorf("against a hung greeter: %v, exit %d after %s, %q; want go-micro's 408 and an exit not 0 within %s", err, got.code, got.took, got.out, callTimeout+execSlack)
	}

	// A greeter scaled to nothing: no address to call.
	kubectl(t, "--namespace="+ns, "scale", "deployment/greeter", "--replicas=0")
	if _, err := eventually(t.Context(), time.Minute, func(ctx context.Context) error {
		if ps, err := pods(ctx, ns, "greeter"); err != nil || len(ps) > 0 {
			return fmt.Errorf("%d greeter pods left (%v)", len(ps), err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err = micro(t.Context(), args...)
	t.Logf("$ kubectl exec deploy/micro -- micro %s   # the greeter scaled to 0\n%s(exit %d after %s)", quoted(args), got.out, got.code, got.took.Round(time.Millisecond))
	if err != nil || got.code == 0 || !strings.Contains(got.out, `"id":"go.micro.client"`) || got.took > callTimeout+execSlack {
		t.Errorf("against a stopped greeter: %v, exit %d after %s, %q; want go-micro's error and an exit not 0 within %s", err, got.code, got.took, got.out, callTimeout+execSlack)
	}
}

// callTimeout is the --client_request_timeout a hung and a stopped greeter
// are called with, and execSlack what kubectl exec adds around the call:
// 0.4 to 0.7 s measured (a bound of 0.5 s failed a run at 1.67 s). go-micro's
// own default is 30 s, so a flag not taken still shows.
const (
	callTimeout = time.Second
	execSlack   = 1500 * time.Millisecond
)

// A call is what micro printed, its exit code, and how long kubectl exec
// took.
type call struct {
	out  string
	code int
	took time.Duration
}

// execMicro runs micro with args in the toolkit's pod in ns, as
// micro/README.md does. An error is kubectl's own (no pod to run in): the
// call's exit code is in call.
func execMicro(ctx context.Context, ns string, args ...string) (call, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.cluster.Host.Bins.Kubectl, append([]string{
		"--namespace=" + ns, "exec", "deploy/micro", "--", "micro"}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.cluster.Kubeconfig)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	// micro's errors come on kubectl's stderr, with kubectl's own line when
	// it exits non-zero: "command terminated with exit code N". kubectl then
	// exits with N.
	c := call{out: out.String(), took: time.Since(start)}
	const kubectlSaid = "command terminated with exit code "
	for line := range strings.Lines(errOut.String()) {
		if !strings.HasPrefix(line, kubectlSaid) {
			c.out += line
		}
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) && strings.Contains(errOut.String(), kubectlSaid) {
		c.code, err = exit.ExitCode(), nil
	}
	if err != nil {
		return c, fmt.Errorf("kubectl exec: %w: %s", err, errOut.String())
	}
	return c, nil
}

// quoted is args as a shell would take them back: JSON in single quotes.
func quoted(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = a
		if strings.ContainsAny(a, `{}" `) {
			q[i] = "'" + a + "'"
		}
	}
	return strings.Join(q, " ")
}
