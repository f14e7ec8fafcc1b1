package deploy

import (
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/micro/kubernetes/api/gateway"
	"github.com/micro/kubernetes/health/probe"
	"github.com/micro/kubernetes/pkg/k8s"
	greeterv1 "github.com/micro/kubernetes/proto/greeter/v1"
	"github.com/micro/kubernetes/services/greeter/handler"
	"github.com/micro/kubernetes/web/frontend"
)

// The repository's root, from this module's folder.
const root = ".."

func loadSkaffold(t *testing.T) Skaffold {
	t.Helper()
	s, err := LoadSkaffold(filepath.Join(root, "skaffold.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// combinations are every subset of the profiles, the empty one first.
func combinations(profiles []string) [][]string {
	all := [][]string{nil}
	for _, p := range profiles {
		for _, c := range all {
			all = append(all, append(slices.Clone(c), p))
		}
	}
	return all
}

func render(t *testing.T, s Skaffold, profiles []string) Objects {
	t.Helper()
	paths, err := s.KustomizePaths(profiles)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Render(root, paths)
	if err != nil {
		t.Fatalf("profiles %v: %v", profiles, err)
	}
	return objs
}

// code reads what the manifests must agree with from the code itself, and
// from `health --help` for the flags the sidecar binary defines.
func code(t *testing.T, s Skaffold) Code {
	t.Helper()
	_, port, err := net.SplitHostPort(probe.DefaultAddress)
	if err != nil {
		t.Fatal(err)
	}
	sidecarPort, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	listen := map[string][]int{
		"web":     {k8s.DefaultPort, k8s.MetricsPort},
		"api":     {k8s.DefaultPort, k8s.MetricsPort},
		"health":  {sidecarPort},
		"loadgen": {k8s.DefaultPort}, // its -health_address in the manifest
		"micro":   {k8s.DefaultPort}, // micro wait's --health_address, likewise
	}
	health := map[string]string{"web": frontend.HealthPath, "api": gateway.HealthPath, "loadgen": "/health", "micro": "/health"}
	var pinned []string
	nats := natsImage(t)
	if nats != "" {
		// NATS's client port, and its --http_port (monitoring) in the
		// manifest.
		listen[nats] = []int{k8s.EventsPort, natsMonitorPort}
		health[nats] = "/healthz"
		pinned = append(pinned, nats)
	}
	metrics := []string{"web", "api"}
	// Every go-micro service (the greeter, and any make new-service adds)
	// is a k8s.NewService: gRPC on DefaultPort, metrics on MetricsPort.
	for _, img := range s.ServiceImages() {
		listen[img] = []int{k8s.DefaultPort, k8s.MetricsPort}
		metrics = append(metrics, img)
	}
	services := slices.Compact(slices.Sorted(slices.Values(append(s.ServiceImages(), greeterv1.ServiceName))))
	calls := map[string][]string{"web": services, "api": gatewayAllows(t), "micro": services}
	if natsImage(t) != "" {
		// Every go-micro service publishes or consumes events over NATS.
		for _, svc := range services {
			calls[svc] = []string{k8s.EventsService}
		}
	}
	return Code{
		ListenPorts:   listen,
		MetricsPort:   k8s.MetricsPort,
		MetricsPath:   k8s.MetricsPath,
		MetricsImages: metrics,
		SelectorPort:  k8s.DefaultPort,
		// The greeter's name as its callers dial it, and every service's
		// image (make new-service names the two alike).
		Services:        services,
		SidecarImage:    "health",
		SidecarFlags:    sidecarFlags(t),
		SidecarPath:     probe.Path,
		SidecarLivePath: probe.LivePath,
		HealthPaths:     health,
		// A service drains its calls, then publishes or hands back the
		// events it holds.
		ShutdownTimeout: k8s.ShutdownTimeout + k8s.EventsFlushTimeout,
		Images:          s.Images(nil),
		PinnedImages:    pinned,
		ConfigParsers: map[string]func([]byte) error{
			"greeter": func(b []byte) error { _, err := handler.ParseConfig(b); return err },
			"web":     func(b []byte) error { _, err := frontend.ParseConfig(b); return err },
			"api":     func(b []byte) error { _, err := gateway.ParseConfig(b); return err },
		},
		ConfigFileEnv:  k8s.EnvConfigFile,
		MemoryLimitEnv: k8s.EnvMemoryLimit,
		Calls:          calls,
		CallPorts:      map[string]int{k8s.EventsService: k8s.EventsPort},
	}
}

// natsMonitorPort is NATS's monitoring port (/healthz), its --http_port.
const natsMonitorPort = 8222

// natsImage is the official NATS image at the version tools/nats-server
// pins: the server make run runs is the one the cluster runs. "" when a
// fork dropped the events, and NATS's manifest (README, "Forking").
func natsImage(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(root, "deploy", "base", "nats.yaml")); os.IsNotExist(err) {
		return ""
	}
	mod, err := os.ReadFile(filepath.Join(root, "tools", "nats-server", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats-server/v2 v(\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("tools/nats-server/go.mod pins no github.com/nats-io/nats-server/v2")
	}
	return "nats:" + string(m[1])
}

// gatewayAllows are the services the API gateway's allow-list names, in the
// configuration every render mounts.
func gatewayAllows(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "deploy", "base", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := gateway.ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Sorted(maps.Keys(c.Allow))
}

func sidecarFlags(t *testing.T) []string {
	t.Helper()
	ctx := t.Context()
	bin := filepath.Join(t.TempDir(), "health")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/micro/kubernetes/health").CombinedOutput(); err != nil {
		t.Fatalf("building the sidecar: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("health --help: %v\n%s", err, out)
	}
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^\s+--([a-z][a-z0-9_-]*)`).FindAllStringSubmatch(string(out), -1) {
		flags = append(flags, m[1])
	}
	if !slices.Contains(flags, "health_address") {
		t.Fatalf("found no --health_address in health --help:\n%s", out)
	}
	return flags
}

func TestEveryProfileCombinationAgreesWithTheCode(t *testing.T) {
	s := loadSkaffold(t)
	c := code(t, s)
	for _, profiles := range combinations(s.Profiles()) {
		name := "profiles=" + strings.Join(profiles, ",")
		t.Run(name, func(t *testing.T) {
			objs := render(t, s, profiles)
			t.Logf("%d objects", objs.Count())
			c := c
			c.Images = s.Images(profiles)
			for _, check := range Checks {
				if err := check.Run(objs, c); err != nil {
					t.Errorf("%s:\n%v", check.Name, err)
				}
			}
		})
	}
}

func TestProfilesSwitchOnTheirComponents(t *testing.T) {
	s := loadSkaffold(t)
	base := render(t, s, nil)
	if len(base.NetworkPolicies) != 0 {
		t.Errorf("the base has %d NetworkPolicies, want none", len(base.NetworkPolicies))
	}
	if got := render(t, s, []string{"network-policies"}); len(got.NetworkPolicies) == 0 || got.Count() != base.Count()+len(got.NetworkPolicies) {
		t.Errorf("network-policies renders %d objects with %d policies, want the base's %d plus the policies", got.Count(), len(got.NetworkPolicies), base.Count())
	}
	added, err := OnlyPodAnnotationsDiffer(base, render(t, s, []string{"conduit"}))
	if err != nil {
		t.Fatalf("conduit: %v", err)
	}
	if len(added) != 1 || added["linkerd.io/inject"] != "enabled" {
		t.Errorf("conduit adds pod annotations %v, want linkerd.io/inject: enabled", added)
	}
	// Profiles are independent: their order does not matter.
	ab := render(t, s, []string{"conduit", "network-policies"})
	ba := render(t, s, []string{"network-policies", "conduit"})
	if !slices.EqualFunc(ab.YAML, ba.YAML, func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Error("conduit,network-policies and network-policies,conduit render differently")
	}
}

func TestSkaffoldConfig(t *testing.T) {
	s := loadSkaffold(t)
	objs := render(t, s, nil)
	for _, cfg := range s.Configs {
		if cfg.APIVersion != "skaffold/v4beta13" {
			t.Errorf("config %s: apiVersion %s, want skaffold/v4beta13", cfg.Metadata.Name, cfg.APIVersion)
		}
	}
	// Every binary is stripped and stamped (k8s.Version) the same way; the
	// loadgen's config repeats the app's flags (YAML anchors do not reach
	// across documents), so they must agree.
	stamp := "-X " + reflect.TypeFor[k8s.Live[int]]().PkgPath() + ".version={{.IMAGE_TAG}}"
	for _, b := range s.Builds() {
		for _, a := range b.Artifacts {
			if a.Ko != nil && (!slices.Equal(a.Ko.Flags, []string{"-trimpath"}) || !slices.Equal(a.Ko.Ldflags, []string{"-s", "-w", stamp})) {
				t.Errorf("artifact %s: flags %q, ldflags %q; want -trimpath, and -s -w %s", a.Image, a.Ko.Flags, a.Ko.Ldflags, stamp)
			}
			if a.Ko == nil || a.Ko.Main == "" || !strings.HasPrefix(a.Ko.FromImage, "gcr.io/distroless/static") || !strings.HasSuffix(a.Ko.FromImage, ":nonroot") {
				t.Errorf("artifact %s: want the ko builder on a distroless static nonroot base", a.Image)
			}
			if _, err := os.Stat(filepath.Join(root, a.Ko.Main, "main.go")); err != nil {
				t.Errorf("artifact %s: ko.main %s: %v", a.Image, a.Ko.Main, err)
			}
		}
		if len(b.Artifacts) > 0 && !(slices.Contains(b.Platforms, "linux/amd64") && slices.Contains(b.Platforms, "linux/arm64")) {
			t.Errorf("a build of %d artifacts is for %v, want linux/amd64 and linux/arm64", len(b.Artifacts), b.Platforms)
		}
	}
	for _, cfg := range s.Configs {
		for _, pf := range cfg.PortForward {
			found := false
			for _, svc := range objs.Services {
				for _, p := range svc.Spec.Ports {
					found = found || (pf.ResourceType == "service" && svc.Name == pf.ResourceName && int(p.Port) == pf.Port)
				}
			}
			if !found {
				t.Errorf("port-forward to %s %s:%d: no such Service port", pf.ResourceType, pf.ResourceName, pf.Port)
			}
		}
	}
	if len(s.Images(nil)) == 0 {
		t.Fatal("skaffold.yaml builds no image")
	}
}
