package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/micro/kubernetes/dev/stack"
)

// No file in the repository holds a private key or a credential.
func TestNoSecretsInTheRepository(t *testing.T) {
	root, err := stack.Root(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", root, "ls-files").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	secret := regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36}|xox[baprs]-[A-Za-z0-9-]{10,}|(?i)(password|passwd|secret|token)\s*[:=]\s*["'][^"'\s]{8,}["']`)
	files := strings.Fields(string(out))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") && strings.Contains(f, "secrets_test") {
			continue // this file names the patterns
		}
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatalf("reading %s: %v", f, err)
		}
		if m := secret.Find(b); m != nil {
			t.Errorf("%s holds what looks like a secret: %.40q", f, m)
		}
	}
	if len(files) < 20 {
		t.Fatalf("only %d files listed: is this the repository?", len(files))
	}
}
