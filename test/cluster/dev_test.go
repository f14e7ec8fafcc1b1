package cluster_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gcrname "github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	// "Dev (edit 3)", whatever the greeting: the kubelet of each greeter's
	// node refreshes the configuration at its own sync, and a CI run met a
	// pod that still said "Hello" here.
	servedAfter(t, forward+"/greeter?name=Dev", "Dev (edit 3)", time.Now(), 10*time.Second)
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
	// others counts the answers that did not carry it, by status (and, for
	// a 200, what it began with).
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
		other := strconv.Itoa(rsp.status)
		if rsp.status == 200 {
			// What it said instead, so a failure shows it.
			other += " " + rsp.body[:min(len(rsp.body), 80)]
		}
		a.others[other]++
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
