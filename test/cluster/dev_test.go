package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gcrname "github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// Bounds of the dev check. They only stop a stuck run: the figures it
// measures are logged (docs/development.md), not asserted.
const (
	// devStartBound: from make dev to the first answer, building every image.
	devStartBound = 5 * time.Minute
	// editBound: from an edit's write to its answer through the forward.
	editBound = 3 * time.Minute
	// inARow answers through the forward must carry an edit for it to be
	// served: none of them from an old pod, a web that still calls an old
	// greeter, or a forward not yet back.
	inARow = 20
	// devLoopRate is the in-cluster request loop's, in requests a second.
	devLoopRate = 50
)

// TestDev runs `make dev`, the README's first command, against the node in
// a copy of the repository, and works in the copy as a developer does:
// three edits of the greeter's Go code, three of the page, one of
// deploy/base/config.json, one that does not compile and the one that mends
// it; then Ctrl-C. Each edit must be served through the port skaffold
// forwards, how long that took and where the time went is logged, and a
// request loop through the web Service sees only 200 from the first answer
// to Ctrl-C. The one change to the copy before make dev: skaffold.yaml
// builds on the tier's stand-in base image (distroless cannot be pulled
// here). Not in parallel: on two cores its timings would measure the other
// tests.
func TestDev(t *testing.T) {
	const ns = "dev"
	dir := t.TempDir()
	copyRepository(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "skaffold.yaml"), env.config, 0o644); err != nil {
		t.Fatal(err)
	}
	// A clone, as a developer has: skaffold tags images by its commit.
	run(t, dir, "git", "init", "-q")
	run(t, dir, "git", "add", "-A")
	run(t, dir, "git", "-c", "user.name=dev", "-c", "user.email=dev@example.invalid", "commit", "-qm", "a clone")
	createNamespace(t, ns)
	t.Cleanup(func() { deleteNamespace(ns) })

	podEvents := watchPods(t, ns)
	builds := watchGoBuilds(t, dir)
	d := startDev(t, dir, ns)

	// 1. The first answer through the forwarded port.
	forward := d.waitForward(t, time.Time{}, devStartBound)
	started := servedAfter(t, forward+"/greeter?name=Dev", "Hello Dev", d.start, devStartBound).served
	t.Logf("make dev: the forwarded web answered %s after the start (every image built, with the Go build cache warm)",
		seconds(started.Sub(d.start)))
	t.Logf("make dev printed, until it watched for changes (the pods' logs left out):\n%s", d.transcript(d.start, "Watching for changes..."))
	checkOnePlatform(t, ns, "greeter")
	loop := startLoop(t.Context(), serviceURL("web", ns)+"/greeter?name=Loop", devLoopRate)

	// 2. Three edits of the greeter's Go code.
	handler := filepath.Join(dir, "services/greeter/handler/greeter.go")
	const line = "rsp.Message = strings.Replace(greeting, NamePlaceholder, req.GetName(), 1)"
	greeter := editor(t, handler, line)
	var greeterTook []time.Duration
	for i := 1; i <= 3; i++ {
		text := fmt.Sprintf("(edit %d)", i)
		written := greeter(line + ` + " ` + text + `"`)
		a := servedAfter(t, forward+"/greeter?name=Dev", "Hello Dev "+text, written, editBound)
		greeterTook = append(greeterTook, a.served.Sub(written))
		d.waitIdle(t, written)
		t.Logf("greeter edit %d: served %s after the write\n%s", i, seconds(a.served.Sub(written)),
			stages(d, builds, podEvents, "greeter", written, a))
		if i == 1 {
			t.Logf("skaffold printed, for the first:\n%s", d.transcript(written, "Watching for changes..."))
		}
	}

	// 3. Three edits of the page, embedded in the web's binary.
	const sentence = "This page asks the"
	page := editor(t, filepath.Join(dir, "web/frontend/templates/index.html"), sentence)
	var pageTook []time.Duration
	for i := 1; i <= 3; i++ {
		text := fmt.Sprintf("This page (edit %d) asks the", i)
		written := page(text)
		a := servedAfter(t, forward+"/", text, written, editBound)
		pageTook = append(pageTook, a.served.Sub(written))
		d.waitIdle(t, written)
		t.Logf("page edit %d: served %s after the write\n%s", i, seconds(a.served.Sub(written)),
			stages(d, builds, podEvents, "web", written, a))
	}

	// 4. The configuration: a new ConfigMap, the same images and pods.
	before := appPods(t, ns)
	config := editor(t, filepath.Join(dir, "deploy/base/config.json"), `"greeting": "Hello {name}"`)
	written := config(`"greeting": "Howdy {name}"`)
	configAt := servedAfter(t, forward+"/greeter?name=Dev", "Howdy Dev (edit 3)", written, configBound).served
	d.waitIdle(t, written)
	if built := d.linesSince(written, "Building ["); len(built) > 0 {
		t.Errorf("a configuration edit rebuilt images: %v", built)
	}
	if after := appPods(t, ns); !slices.Equal(after, before) {
		t.Errorf("a configuration edit replaced pods: %v, then %v", before, after)
	}
	t.Logf("config.json edit: redeployed %s after the write, served %s after it (the kubelet refreshes a mounted ConfigMap at its next sync of the pod); no image built, no pod replaced",
		d.first(t, written, "Starting deploy...").Sub(written).Round(100*time.Millisecond), configAt.Sub(written).Round(time.Second))

	// 5. An edit that does not compile, then the one that mends it.
	greeterImage := deploymentImage(t, ns, "greeter")
	written = greeter(line + " + undefinedOnPurpose")
	if _, err := d.waitLine(written, "undefined: undefinedOnPurpose", editBound); err != nil {
		t.Fatalf("skaffold did not print the compiler's error: %v", err)
	}
	d.waitIdle(t, written)
	servedAfter(t, forward+"/greeter?name=Dev", "Howdy Dev (edit 3)", time.Now(), 10*time.Second)
	if image := deploymentImage(t, ns, "greeter"); image != greeterImage {
		t.Errorf("after an edit that does not compile, the greeter's image changed: %s, then %s", greeterImage, image)
	}
	t.Logf("broken edit: skaffold printed the compiler's error %s after the write; the pods kept serving the last good build. skaffold printed:\n%s",
		d.first(t, written, "undefined: undefinedOnPurpose").Sub(written).Round(100*time.Millisecond), d.transcript(written, "Watching for changes..."))
	written = greeter(line + ` + " (mended)"`)
	mended := servedAfter(t, forward+"/greeter?name=Dev", "Howdy Dev (mended)", written, editBound).served
	d.waitIdle(t, written)
	t.Logf("the edit after the broken one: served %s after the write", seconds(mended.Sub(written)))

	// The loop ran from the first answer through every redeploy.
	results := loop.stop()
	s := summarize(results)
	t.Logf("the in-cluster loop: %d requests in %s (%.0f/s) through every redeploy: %v", len(results), s.span.Round(time.Second), s.rate, s.statuses)
	if s.statuses["200"] != len(results) {
		t.Errorf("the in-cluster loop got other answers than 200 during make dev: %v", s.statuses)
	}
	if s.rate < 0.8*devLoopRate {
		t.Errorf("the in-cluster loop sent %.0f requests a second, want about %d", s.rate, devLoopRate)
	}
	t.Logf("edit to served: greeter %s, page %s", median(greeterTook), median(pageTook))

	// 6. Ctrl-C, as a terminal sends it: to make's process group.
	d.interrupt(t, ns, forward)
}

// devSession is make dev, running in a process group of its own, and
// every line it printed, with when it was read.
type devSession struct {
	cmd   *exec.Cmd
	start time.Time

	mu    sync.Mutex
	lines []devLine
	ended chan struct{}
}

type devLine struct {
	at   time.Time
	text string
}

// startDev runs make dev in dir, with what a developer's shell has: the
// cluster's kubeconfig, a registry (SKAFFOLD_DEFAULT_REPO, as the README
// says), a namespace, and skaffold, kubectl and kustomize on PATH.
func startDev(t *testing.T, dir, ns string) *devSession {
	t.Helper()
	bins := env.cluster.Host.Bins
	path := strings.Join([]string{filepath.Dir(bins.Skaffold), filepath.Dir(bins.Kubectl), filepath.Dir(bins.Kustomize), os.Getenv("PATH")}, ":")
	cmd := exec.Command("make", "dev")
	cmd.Dir = dir
	// A shell's environment: not the make test-cluster this may run under.
	shell := slices.DeleteFunc(os.Environ(), func(v string) bool {
		name, _, _ := strings.Cut(v, "=")
		return name == "MAKEFLAGS" || name == "MFLAGS" || name == "MAKELEVEL"
	})
	cmd.Env = append(shell,
		"PATH="+path,
		"KUBECONFIG="+env.cluster.Kubeconfig,
		"SKAFFOLD_DEFAULT_REPO="+env.cluster.Registry,
		"SKAFFOLD_NAMESPACE="+ns,
		// skaffold's global config as the other tests have it (no
		// metrics, no survey), and a cache of its own: a first make dev.
		"SKAFFOLD_CONFIG="+filepath.Join(env.cluster.Host.Dir, "skaffold-global.yaml"),
		"SKAFFOLD_CACHE_FILE="+filepath.Join(t.TempDir(), "skaffold-cache.yaml"),
		// The copy's own go.work; every module is in the cache.
		"GOWORK=", "GOPROXY=off", "GOFLAGS=-mod=readonly",
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a terminal's foreground job
	out, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	d := &devSession{cmd: cmd, ended: make(chan struct{})}
	logFile, err := os.Create(filepath.Join(t.TempDir(), "make-dev.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // if the test stopped early
		<-d.ended
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("make dev printed (its last 200 lines):\n%s", lastLines(string(b), 200))
		}
	})
	go func() {
		_ = cmd.Wait()
		w.Close()
	}()
	go func() {
		defer close(d.ended)
		defer logFile.Close()
		s := bufio.NewScanner(out)
		s.Buffer(nil, 1<<20) // skaffold prints a build's error on one line
		for s.Scan() {
			at := time.Now()
			fmt.Fprintf(logFile, "%s %s\n", at.Format("15:04:05.000"), s.Text())
			d.mu.Lock()
			d.lines = append(d.lines, devLine{at, s.Text()})
			d.mu.Unlock()
		}
	}()
	return d
}

// podLog says whether a line is a pod's log, which skaffold dev prints
// behind the pod's and container's names.
func podLog(line string) bool { return strings.HasPrefix(line, "[") }

// linesSince are skaffold's own lines (not the pods' logs) read after t that
// hold s.
func (d *devSession) linesSince(t time.Time, s string) []devLine {
	d.mu.Lock()
	defer d.mu.Unlock()
	var found []devLine
	for _, l := range d.lines {
		if l.at.After(t) && !podLog(l.text) && strings.Contains(l.text, s) {
			found = append(found, l)
		}
	}
	return found
}

// waitLine waits for the first line of skaffold's own after t that holds s.
func (d *devSession) waitLine(t time.Time, s string, limit time.Duration) (devLine, error) {
	for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
		if found := d.linesSince(t, s); len(found) > 0 {
			return found[0], nil
		}
		select {
		case <-d.ended:
			return devLine{}, fmt.Errorf("make dev ended before it printed %q", s)
		default:
		}
		if time.Now().After(deadline) {
			return devLine{}, fmt.Errorf("make dev did not print %q within %s", s, limit)
		}
	}
}

// first is when skaffold first printed s after t.
func (d *devSession) first(t *testing.T, after time.Time, s string) time.Time {
	t.Helper()
	l, err := d.waitLine(after, s, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return l.at
}

// waitIdle waits until skaffold is done with what a change written at t
// set off: it watches for changes again.
func (d *devSession) waitIdle(t *testing.T, written time.Time) {
	t.Helper()
	if _, err := d.waitLine(written, "Watching for changes...", editBound); err != nil {
		t.Fatal(err)
	}
}

// forwardLine is how skaffold says where it forwards the web Service.
var forwardLine = regexp.MustCompile(`Port forwarding service/web in namespace \S+, remote port 80 -> (http://\S+)`)

// waitForward returns the URL skaffold forwards the web to, the first time
// it says so after t.
func (d *devSession) waitForward(t *testing.T, after time.Time, limit time.Duration) string {
	t.Helper()
	l, err := d.waitLine(after, "Port forwarding service/web", limit)
	if err != nil {
		t.Fatal(err)
	}
	m := forwardLine.FindStringSubmatch(l.text)
	if m == nil {
		t.Fatalf("skaffold said %q, want where it forwards the web", l.text)
	}
	return m[1]
}

// transcript is what skaffold printed from t to its first line holding
// until (to its last line for ""), without the pods' logs.
func (d *devSession) transcript(t time.Time, until string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	for _, l := range d.lines {
		if l.at.Before(t) || podLog(l.text) {
			continue
		}
		b.WriteString(l.text + "\n")
		if until != "" && strings.Contains(l.text, until) {
			break
		}
	}
	return b.String()
}

// interrupt sends SIGINT to make dev's process group, as Ctrl-C in a
// terminal does, and checks that everything skaffold deployed is deleted,
// the forwarded port is closed, and no process of the group is left.
func (d *devSession) interrupt(t *testing.T, ns, forward string) {
	t.Helper()
	pgid := d.cmd.Process.Pid
	sent := time.Now()
	if err := syscall.Kill(-pgid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.ended:
	case <-time.After(2 * time.Minute):
		t.Fatal("make dev did not end within 2m of Ctrl-C")
	}
	t.Logf("Ctrl-C: make dev ended after %s with %v; skaffold printed:\n%s", time.Since(sent).Round(100*time.Millisecond),
		d.cmd.ProcessState, d.transcript(sent, ""))
	if _, err := eventually(t.Context(), time.Minute, func(context.Context) error {
		if left := groupProcesses(pgid); len(left) > 0 {
			return fmt.Errorf("left running: %v", left)
		}
		return nil
	}); err != nil {
		t.Errorf("after Ctrl-C, make dev's processes: %v", err)
	}
	if _, err := eventually(t.Context(), time.Minute, func(ctx context.Context) error {
		objects, err := appObjects(ctx, ns)
		if err == nil && len(objects) > 0 {
			err = fmt.Errorf("still there: %v", objects)
		}
		return err
	}); err != nil {
		t.Errorf("after Ctrl-C, what skaffold deployed: %v", err)
	} else {
		t.Logf("Ctrl-C: every object skaffold deployed, pods included, was gone %s after the signal", time.Since(sent).Round(100*time.Millisecond))
	}
	u := strings.TrimPrefix(forward, "http://")
	if c, err := net.DialTimeout("tcp", u, time.Second); err == nil {
		c.Close()
		t.Errorf("after Ctrl-C, %s still accepts connections", u)
	}
}

// groupProcesses are the processes of a process group still running, by
// pid and command.
func groupProcesses(pgid int) []string {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var left []string
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// The fields after the command, which is in parentheses: state,
		// ppid, pgrp.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		fields := strings.Fields(s[i+1:])
		if len(fields) > 2 && fields[2] == strconv.Itoa(pgid) && fields[0] != "Z" {
			left = append(left, strings.TrimPrefix(filepath.Dir(f), "/proc/")+" "+s[strings.IndexByte(s, '(')+1:i])
		}
	}
	return left
}

// appObjects are the objects of ns that carry the application's label, of
// every kind it deploys, pods included, as kubectl names them.
func appObjects(ctx context.Context, ns string) ([]string, error) {
	cmd := exec.CommandContext(ctx, env.cluster.Host.Bins.Kubectl, "get",
		"deployments,services,configmaps,serviceaccounts,poddisruptionbudgets,pods",
		"--selector="+partOfLabel+"="+partOf, "--namespace="+ns, "--output=name")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.cluster.Kubeconfig)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl get: %w", err)
	}
	return strings.Fields(string(out)), nil
}

// editor returns a function that writes file with its text old replaced,
// once, by the text it is given, and returns when it wrote.
func editor(t *testing.T, file, old string) func(new string) time.Time {
	t.Helper()
	original, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(original), old) {
		t.Fatalf("%s no longer holds %q: edit TestDev", file, old)
	}
	return func(new string) time.Time {
		t.Helper()
		if err := os.WriteFile(file, []byte(strings.Replace(string(original), old, new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
}

// answers is what servedAfter saw.
type answers struct {
	// served is when the first of the answers in a row that carried the
	// edit was sent.
	served time.Time
	// reopened is when the first answer after the last time there was none
	// (the forward is closed while skaffold redeploys) was sent; zero if
	// every request had one.
	reopened time.Time
	// others counts the answers that did not carry it, by status.
	others map[string]int
}

// servedAfter asks url until it answers want inARow times in a row.
func servedAfter(t *testing.T, url, want string, after time.Time, limit time.Duration) answers {
	t.Helper()
	a := answers{others: map[string]int{}}
	streak, closed := 0, false
	for deadline := after.Add(limit); streak < inARow; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %q %d times in a row within %s of %s; meanwhile %v", url, want, inARow, limit, after.Format("15:04:05.000"), a.others)
		}
		sent := time.Now()
		rsp, err := get(t.Context(), url)
		if err != nil {
			a.others["no answer"]++
			streak, closed = 0, true
			continue
		}
		if closed {
			a.reopened, closed = sent, false
		}
		if rsp.status == 200 && strings.Contains(rsp.body, want) {
			if streak == 0 {
				a.served = sent
			}
			streak++
			continue
		}
		streak = 0
		a.others[strconv.Itoa(rsp.status)]++
	}
	return a
}

// appPods are the names of the pods of ns, sorted.
func appPods(t *testing.T, ns string) []string {
	t.Helper()
	list, err := pods(t.Context(), ns, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range list {
		if p.DeletionTimestamp == nil {
			names = append(names, fmt.Sprintf("%s(restarts %v)", p.Name, restartCounts(p)))
		}
	}
	slices.Sort(names)
	return names
}

func restartCounts(p corev1.Pod) []int32 {
	var n []int32
	for _, c := range p.Status.ContainerStatuses {
		n = append(n, c.RestartCount)
	}
	return n
}

// deploymentImage is the image of a Deployment's first container.
func deploymentImage(t *testing.T, ns, name string) string {
	t.Helper()
	d, err := env.cluster.Client.AppsV1().Deployments(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Spec.Containers[0].Image
}

// checkOnePlatform checks that skaffold dev built the deployed image for
// the node's platform alone: skaffold.yaml lists two, for builds to push.
func checkOnePlatform(t *testing.T, ns, deployment string) {
	t.Helper()
	image := deploymentImage(t, ns, deployment)
	ref, err := gcrname.ParseReference(image)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	if desc.MediaType.IsIndex() {
		t.Errorf("make dev deployed %s, an index of several platforms: it should build the node's alone", image)
		return
	}
	t.Logf("make dev deployed %s: one image (%s), for the node's platform alone", image, desc.MediaType)
}

// podEvent is what a watch said of a pod, and when.
type podEvent struct {
	at         time.Time
	kind       watch.EventType
	name, app  string
	ready      bool
	terminated bool // deleting
}

type podEvents struct {
	mu     sync.Mutex
	events []podEvent
}

// watchPods records every change of ns's pods until the test ends.
func watchPods(t *testing.T, ns string) *podEvents {
	t.Helper()
	l := &podEvents{}
	w, err := env.cluster.Client.CoreV1().Pods(ns).Watch(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	go func() {
		for e := range w.ResultChan() {
			p, ok := e.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			ready := false
			for _, c := range p.Status.Conditions {
				ready = ready || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
			}
			l.mu.Lock()
			l.events = append(l.events, podEvent{time.Now(), e.Type, p.Name, p.Labels["app.kubernetes.io/name"], ready, p.DeletionTimestamp != nil})
			l.mu.Unlock()
		}
	}()
	return l
}

// rollout is when, after t, the last new pod of app was first Ready, and
// when the last pod of app that was there before t was gone.
func (l *podEvents) rollout(app string, t time.Time) (newReady, oldGone time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	added := map[string]time.Time{}
	readyAt := map[string]time.Time{}
	for _, e := range l.events {
		if e.app != app {
			continue
		}
		if _, ok := added[e.name]; !ok {
			added[e.name] = e.at
		}
		if e.ready && readyAt[e.name].IsZero() && !e.terminated {
			readyAt[e.name] = e.at
		}
		if e.kind == watch.Deleted && added[e.name].Before(t) && e.at.After(oldGone) {
			oldGone = e.at
		}
	}
	for name, at := range added {
		if at.After(t) && readyAt[name].After(newReady) {
			newReady = readyAt[name]
		}
	}
	return newReady, oldGone
}

// goBuilds records when each `go build` run in a folder started and ended,
// as seen in /proc every 20 ms: skaffold's ko builder runs one per image.
type goBuilds struct {
	mu   sync.Mutex
	runs []goBuild
}

type goBuild struct{ start, end time.Time }

func watchGoBuilds(t *testing.T, dir string) *goBuilds {
	t.Helper()
	b := &goBuilds{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		seen := map[string]int{} // pid -> index in runs, or -1 for another process
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
			now := time.Now()
			entries, _ := os.ReadDir("/proc")
			live := map[string]bool{}
			for _, e := range entries {
				pid := e.Name()
				if _, err := strconv.Atoi(pid); err != nil {
					continue
				}
				live[pid] = true
				if _, ok := seen[pid]; ok {
					continue
				}
				seen[pid] = -1
				cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
				args := strings.Split(string(cmdline), "\x00")
				cwd, _ := os.Readlink("/proc/" + pid + "/cwd")
				if len(args) > 1 && filepath.Base(args[0]) == "go" && args[1] == "build" && strings.HasPrefix(cwd, dir) {
					b.mu.Lock()
					seen[pid] = len(b.runs)
					b.runs = append(b.runs, goBuild{start: now})
					b.mu.Unlock()
				}
			}
			b.mu.Lock()
			for pid, i := range seen {
				if i >= 0 && !live[pid] && b.runs[i].end.IsZero() {
					b.runs[i].end = now
				}
				if !live[pid] {
					delete(seen, pid)
				}
			}
			b.mu.Unlock()
		}
	}()
	return b
}

// after is the first go build that started after t.
func (b *goBuilds) after(t time.Time) (goBuild, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.runs {
		if r.start.After(t) {
			return r, true
		}
	}
	return goBuild{}, false
}

// stages says where the time went between an edit of app's sources,
// written at t, and its answer through the forward: each moment after the
// write, and each stage's length.
func stages(d *devSession, builds *goBuilds, pods *podEvents, app string, written time.Time, a answers) string {
	at := func(s string) time.Time {
		if found := d.linesSince(written, s); len(found) > 0 {
			return found[0].at
		}
		return time.Time{}
	}
	build, _ := builds.after(written)
	newReady, oldGone := pods.rollout(app, written)
	type moment struct {
		name string
		at   time.Time
	}
	moments := []moment{
		{"skaffold saw the change", at("Generating tags...")},
		{"go build started", build.start},
		{"go build ended", build.end},
		{"ko pushes the image", at("Publishing ")},
		{"pushed", at("Published ")},
		{"deploy started (forward stopped)", at("Starting deploy...")},
		{"applied", at("Waiting for deployments to stabilize...")},
		{"last new pod Ready", newReady},
		{"rollout done", at("Deployments stabilized in")},
		{"forward answers again", a.reopened},
		{"skaffold says it forwards again", at("Port forwarding service/web")},
		{"last old pod gone", oldGone},
		{"served (" + strconv.Itoa(inARow) + " new answers in a row)", a.served},
	}
	// In the order they happened (the old pods may go before or after the
	// forward is back), those not seen last.
	slices.SortStableFunc(moments, func(a, b moment) int {
		if a.at.IsZero() != b.at.IsZero() {
			if a.at.IsZero() {
				return 1
			}
			return -1
		}
		return a.at.Compare(b.at)
	})
	var b strings.Builder
	prev := written
	for _, m := range moments {
		if m.at.IsZero() {
			fmt.Fprintf(&b, "  %-44s (not seen)\n", m.name)
			continue
		}
		fmt.Fprintf(&b, "  %-44s +%6.2fs  (%5.2fs after the one above)\n", m.name, m.at.Sub(written).Seconds(), m.at.Sub(prev).Seconds())
		prev = m.at
	}
	return b.String()
}

// median says the median of some durations, and all of them.
func median(ds []time.Duration) string {
	sorted := slices.Sorted(slices.Values(ds))
	var all []string
	for _, d := range ds {
		all = append(all, seconds(d))
	}
	return fmt.Sprintf("median %s of %s", seconds(sorted[len(sorted)/2]), strings.Join(all, ", "))
}

// seconds writes d in seconds, to a tenth.
func seconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// lastLines are the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
