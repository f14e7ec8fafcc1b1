package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type testConfig struct {
	X struct {
		V string `json:"v"`
	} `json:"x"`
}

func parseTest(data []byte) (string, error) {
	var c testConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return "", err
	}
	if c.X.V == "" || strings.Contains(c.X.V, "bad") {
		return "", errors.New("x.v must be set and good")
	}
	return c.X.V, nil
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// eventually waits up to three reload intervals for live to read want.
func eventually(t *testing.T, live *Live[string], want string) {
	t.Helper()
	deadline := time.Now().Add(3 * ConfigReloadInterval)
	for live.Get() != want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := live.Get(); got != want {
		t.Fatalf("config = %q, want %q", got, want)
	}
}

func TestLoadConfigFollowsTheFile(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(t.TempDir(), "config.json")
	write(t, path, `{"x": {"v": "first"}}`)

	live, err := LoadConfig(ctx, path, parseTest)
	if err != nil {
		t.Fatal(err)
	}
	if got := live.Get(); got != "first" {
		t.Fatalf("config = %q, want first", got)
	}
	write(t, path, `{"x": {"v": "second"}}`)
	eventually(t, live, "second")

	// Refused changes keep the last good value.
	for _, bad := range []string{`{"x": {"v": "bad value"}}`, `{"x": `, `{}`} {
		write(t, path, bad)
		time.Sleep(2 * ConfigReloadInterval)
		if got := live.Get(); got != "second" {
			t.Fatalf("after %s: config = %q, want the last good one", bad, got)
		}
	}
	write(t, path, `{"x": {"v": "third"}}`)
	eventually(t, live, "third")
}

func TestLoadConfigFailsFast(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	write(t, bad, `{"x": {"v": "bad"}}`)
	for _, path := range []string{bad, filepath.Join(dir, "missing.json")} {
		if _, err := LoadConfig(context.Background(), path, parseTest); err == nil {
			t.Errorf("LoadConfig(%s) succeeded", filepath.Base(path))
		}
	}
}

func TestVariablesOverrideTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	write(t, path, `{"x": {"v": "file"}}`)
	t.Setenv(ConfigEnvPrefix+"_X_V", "env")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live, err := LoadConfig(ctx, path, parseTest)
	if err != nil {
		t.Fatal(err)
	}
	if got := live.Get(); got != "env" {
		t.Fatalf("config = %q, want the variable's", got)
	}
}
