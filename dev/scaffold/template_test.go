package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/micro/kubernetes/dev/stack"
)

func TestNames(t *testing.T) {
	for name, want := range map[string]string{
		"":                      "needs a name",
		"Orders":                "must be lower case",
		"9lives":                "not a DNS label",
		"order_item":            "not a DNS label",
		"orders-":               "not a DNS label",
		"-orders":               "not a DNS label",
		strings.Repeat("a", 64): "not a DNS label",
		"func":                  "Go keyword",
		"type":                  "Go keyword",
	} {
		if _, err := parseName(name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseName(%q) = %v, want an error saying %q", name, err, want)
		}
	}
	n, err := parseName("order-history")
	if err != nil || n != (names{Name: "order-history", Ident: "orderhistory", Camel: "OrderHistory"}) {
		t.Errorf("parseName(order-history) = %+v, %v", n, err)
	}
}

// Taken: the greeter's name (a service), the ConfigMap's, and every
// top-level folder's (the web, the sidecar, deploy, ...; a fork's own).
func TestTakenNamesAreRefused(t *testing.T) {
	root := repoRoot(t)
	taken := []string{"greeter", "config"}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			taken = append(taken, e.Name())
		}
	}
	for _, name := range taken {
		n, err := parseName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkFree(root, n); err == nil || !strings.Contains(err.Error(), "is taken") {
			t.Errorf("%s: %v, want it refused as taken", name, err)
		}
	}
	if n := freeName(t, root); checkFree(root, n) != nil {
		t.Errorf("%s: want it free", n.Name)
	}
}

// TestFailureMidwayLeavesTheTreeAsItWas fails new-service at every write it
// makes, and at the code generation, in a copy of the repository: each time
// the tree must be exactly as before.
func TestFailureMidwayLeavesTheTreeAsItWas(t *testing.T) {
	root := copyRepo(t)
	before := snapshot(t, root)
	n := freeName(t, root)
	changes, err := planService(root, n)
	if err != nil {
		t.Fatal(err)
	}
	failed := errors.New("disk full")
	for i := 0; i <= len(changes); i++ {
		tr := newTx(root)
		writes := 0
		tr.write = func(path string, data []byte, perm os.FileMode) error {
			if writes++; writes > i {
				return failed
			}
			return os.WriteFile(path, data, perm)
		}
		// With i = len(changes) every write succeeds and generation fails.
		gen := func(context.Context, string) error { return failed }
		if _, err := newService(t.Context(), root, n, tr, gen); !errors.Is(err, failed) {
			t.Fatalf("failing after %d writes: %v, want the failure", i, err)
		}
		if after := snapshot(t, root); !equal(before, after) {
			t.Fatalf("failing after %d writes changed the tree: %v", i, diff(before, after))
		}
	}
}

// TestNewServiceAndRenameInACopy is what a fork does, in a copy of the
// repository: add a service, rename the module, then build, vet and test
// what changed, render and check the manifests (the deploy tests), and run
// the new service with make run's harness. The new service must be the
// greeter with its names changed, and nothing may name the old module.
func TestNewServiceAndRenameInACopy(t *testing.T) {
	root := copyRepo(t)
	from, err := currentModule(root)
	if err != nil {
		t.Fatal(err)
	}
	module := "example.com/acme/shop"
	if module == from {
		module = "example.com/acme/store"
	}
	inCopy(t, root, "git", "init", "-q")
	inCopy(t, root, "git", "add", "-A")
	n := freeName(t, root)
	out := inCopy(t, root, "go", "run", "./dev/scaffold", "new-service", n.Name)
	t.Logf("make new-service NAME=%s:\n%s", n.Name, out)
	inCopy(t, root, "go", "run", "./dev/scaffold", "rename", module)

	r := replacer(n, template)
	for _, dir := range []string{"services/" + n.Name, "proto/" + n.Name, "deploy/base/" + n.Name + ".yaml"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if bytes.Contains(bytes.ToLower(data), []byte("greeter")) {
				t.Errorf("%s still names the greeter", rel)
			}
			if generatedCode(p) {
				return nil
			}
			// Derived, not drifted: with the names put back (and the
			// module), each file is the greeter's.
			back := strings.ReplaceAll(r.Replace(string(data)), module, from)
			orig, err := os.ReadFile(filepath.Join(repoRoot(t), r.Replace(rel)))
			if err != nil {
				t.Errorf("%s: no greeter file it comes from: %v", rel, err)
			} else if back != string(orig) {
				t.Errorf("%s differs from %s beyond the names", rel, r.Replace(rel))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if out := inCopyMay(root, "grep", "-rIl", from, "--exclude-dir=.git", "."); out != "" {
		t.Errorf("files still name the old module:\n%s", out)
	}

	// What make test checks first: gofmt, tidy go.mod files, go vet.
	inCopy(t, root, "make", "vet")
	inCopy(t, root, "go", "test", "-count=1",
		module+"/services/"+n.Name+"/...", module+"/proto/...", module+"/deploy/...", module+"/dev/stack/...")
}

// freeName is a name for a new service that is free in root: orders, or
// orders-2... in a fork that has an orders service already.
func freeName(t *testing.T, root string) names {
	t.Helper()
	for i := 1; i < 10; i++ {
		name := "orders"
		if i > 1 {
			name += "-" + strconv.Itoa(i)
		}
		n, err := parseName(name)
		if err != nil {
			t.Fatal(err)
		}
		if checkFree(root, n) == nil {
			return n
		}
	}
	t.Fatal("no free name for a new service")
	return names{}
}

// repoRoot is this repository's root.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := stack.Root(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// copyRepo copies the repository's files (tracked, or new and not ignored)
// into a temporary folder.
func copyRepo(t *testing.T) string {
	t.Helper()
	src := repoRoot(t)
	files, err := trackedFiles(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// inCopy runs a command in dir, its own workspace (not this one's).
func inCopy(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=", "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

// inCopyMay runs a command that may fail (grep finding nothing) and returns
// its output.
func inCopyMay(dir, name string, args ...string) string {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, _ := cmd.Output()
	return strings.TrimSpace(string(out))
}

// snapshot hashes every file and lists every folder under root.
func snapshot(t *testing.T, root string) map[string][32]byte {
	t.Helper()
	s := map[string][32]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			s[p+"/"] = [32]byte{}
			return nil
		}
		data, err := os.ReadFile(p)
		s[p] = sha256.Sum256(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func equal(a, b map[string][32]byte) bool { return len(diff(a, b)) == 0 }

func diff(a, b map[string][32]byte) []string {
	var d []string
	for p, h := range a {
		if b[p] != h || (h == [32]byte{} && !has(b, p)) {
			d = append(d, p)
		}
	}
	for p := range b {
		if !has(a, p) {
			d = append(d, p)
		}
	}
	return d
}

func has(m map[string][32]byte, k string) bool { _, ok := m[k]; return ok }
