package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// A tx writes files under a root and can put everything back: each file it
// changes as it was, each file and folder it creates gone. Nothing is
// written until every change is computed, and a failure midway rolls back.
type tx struct {
	root     string
	original map[string][]byte // path -> content before; nil: did not exist
	modes    map[string]os.FileMode
	dirs     []string // folders it created, outermost first
	// write writes a file; tests replace it to fail midway.
	write func(path string, data []byte, perm os.FileMode) error
}

func newTx(root string) *tx {
	return &tx{root: root, original: map[string][]byte{}, modes: map[string]os.FileMode{}, write: os.WriteFile}
}

// put writes data to rel (a slash path under the root), remembering what
// was there.
func (t *tx) put(rel string, data []byte) error {
	path := filepath.Join(t.root, filepath.FromSlash(rel))
	if _, seen := t.original[path]; !seen {
		t.modes[path] = 0o644
		if info, err := os.Stat(path); err == nil {
			t.modes[path] = info.Mode().Perm() // a script stays executable
		}
		old, err := os.ReadFile(path)
		switch {
		case err == nil:
			t.original[path] = old
		case errors.Is(err, os.ErrNotExist):
			t.original[path] = nil
		default:
			return fmt.Errorf("reading %s: %w", rel, err)
		}
	}
	if err := t.mkdirs(filepath.Dir(path)); err != nil {
		return err
	}
	if err := t.write(path, data, t.modes[path]); err != nil {
		return fmt.Errorf("writing %s: %w", rel, err)
	}
	return nil
}

// mkdirs creates dir and its missing parents, remembering them: rollback
// removes them with whatever was written into them (by protoc too).
func (t *tx) mkdirs(dir string) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		missing = append(missing, d)
	}
	slices.Reverse(missing)
	for _, d := range missing {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
		t.dirs = append(t.dirs, d)
	}
	return nil
}

// rollback restores every file it changed and removes what it created,
// including whatever else was written into the folders it created.
func (t *tx) rollback() error {
	var errs []error
	for path, old := range t.original {
		var err error
		if old == nil {
			err = os.Remove(path)
		} else {
			err = os.WriteFile(path, old, t.modes[path])
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for i := len(t.dirs) - 1; i >= 0; i-- {
		if err := os.RemoveAll(t.dirs[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// written are the files the transaction wrote, relative to the root.
func (t *tx) written() []string {
	var rel []string
	for path := range t.original {
		r, _ := filepath.Rel(t.root, path)
		rel = append(rel, filepath.ToSlash(r))
	}
	slices.Sort(rel)
	return rel
}
