package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

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
