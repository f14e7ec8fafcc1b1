package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/micro/kubernetes/dev/stack"
)

// inARow is how many answers in a row must carry an edit for it to count
// as served, as the cluster tier counts it for skaffold dev.
const inARow = 20

// make run's inner loop, in a copy of the repository: each edit of the
// greeter's Go code is rebuilt and served while the web and the gateway
// keep running; an edit that does not compile is printed and the greeter
// keeps serving the last one that did; the next good edit is served; with
// two replicas of the greeter, an edit costs no answer. The time from each
// write to the new answer is logged (docs/development.md).
func TestLocalRunReloadsAnEdit(t *testing.T) {
	root, err := stack.Root(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	copyDir := t.TempDir()
	copyRepository(t, root, copyDir)
	r := startRunner(t, copyDir)
	url := r.ports.URL() + "/greeter?name=Edit"
	webPid := pidOf(t, r.bin, "web")

	handler := filepath.Join(copyDir, "services/greeter/handler/greeter.go")
	original, err := os.ReadFile(handler)
	if err != nil {
		t.Fatal(err)
	}
	const line = "rsp.Message = strings.Replace(greeting, NamePlaceholder, req.GetName(), 1)"
	if !strings.Contains(string(original), line) {
		t.Fatalf("%s no longer holds %q: edit this test", handler, line)
	}
	edit := func(suffix string) time.Time {
		t.Helper()
		code := strings.Replace(string(original), line, line+" + "+suffix, 1)
		if err := os.WriteFile(handler, []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}

	var took []time.Duration
	for i, text := range []string{"(edit 1)", "(edit 2)", "(edit 3)"} {
		written := edit(`" ` + text + `"`)
		served, others := servedAfter(t, url, "Hello Edit "+text, written)
		took = append(took, served.Sub(written))
		t.Logf("edit %d: served %s after the write (answers meanwhile: %v)", i+1, served.Sub(written).Round(10*time.Millisecond), others)
	}
	slices.Sort(took)
	t.Logf("edit to served on loopback, median of %d greeter edits: %s", len(took), took[len(took)/2].Round(10*time.Millisecond))

	// An edit that does not compile: the compiler's error is printed and
	// the greeter keeps serving the last good build.
	edit("undefinedOnPurpose")
	if _, ok := r.waitFor("undefined: undefinedOnPurpose", 2*time.Minute); !ok {
		t.Fatal("the runner did not print the compiler's error")
	}
	for range inARow {
		if a := get(t, "GET", url); a.status != 200 || !strings.Contains(a.body, "Hello Edit (edit 3)") {
			t.Fatalf("with the greeter's code broken: %d %s, want the last good build's answer", a.status, a.body)
		}
	}
	written := edit(`" (fixed)"`)
	served, _ := servedAfter(t, url, "Hello Edit (fixed)", written)
	t.Logf("the edit after the broken one: served %s after the write", served.Sub(written).Round(10*time.Millisecond))

	if pid := pidOf(t, r.bin, "web"); pid != webPid {
		t.Errorf("the web restarted (pid %d, then %d): only the greeter's sources changed", webPid, pid)
	}
	r.stop(t, syscall.SIGINT)

	// With two replicas they restart one at a time, and the web, which
	// balances over them, answers every request.
	r = startRunner(t, copyDir, "-greeter-replicas=2")
	url = r.ports.URL() + "/greeter?name=Edit"
	written = edit(`" (replicas)"`)
	served, others := servedAfter(t, url, "Hello Edit (replicas)", written)
	t.Logf("with two replicas: served %s after the write (answers meanwhile: %v)", served.Sub(written).Round(10*time.Millisecond), others)
	if stockClients() {
		t.Logf("not checked: with go-micro's own client the web calls the replica that restarts (see stockClients)")
		others = nil
	}
	for status := range others {
		if status != 200 {
			t.Errorf("with two replicas, the web answered %d while they restarted: %v", status, others)
		}
	}
	r.stop(t, syscall.SIGINT)
}

// servedAfter asks url until it answers want inARow times in a row, at
// most 2 minutes after the edit was written, and returns when the first of
// those was sent; others counts what else it answered meanwhile, by status.
func servedAfter(t *testing.T, url, want string, written time.Time) (time.Time, map[int]int) {
	t.Helper()
	others := map[int]int{}
	var first time.Time
	streak := 0
	for deadline := written.Add(2 * time.Minute); streak < inARow; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %q %d times in a row within 2m; meanwhile %v", url, want, inARow, others)
		}
		sent := time.Now()
		a := get(t, "GET", url)
		if a.status == 200 && strings.Contains(a.body, `"`+want+`"`) {
			if streak == 0 {
				first = sent
			}
			streak++
			continue
		}
		streak = 0
		others[a.status]++
	}
	return first, others
}

// copyRepository copies the files git knows of the repository at root
// into dir, as they are in the working tree.
func copyRepository(t *testing.T, root, dir string) {
	t.Helper()
	list, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		info, err := os.Stat(filepath.Join(root, f))
		if os.IsNotExist(err) {
			continue // deleted, not yet committed
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, info.Mode()); err != nil {
			t.Fatal(err)
		}
	}
}
