package main

import (
	"bytes"
	"context"
	"fmt"
	"go/format"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
)

// currentModule is the repository's module prefix: the proto module's path
// without its folder.
func currentModule(root string) (string, error) {
	data, err := os.ReadFile(filepath.Join(root, "proto", "go.mod"))
	if err != nil {
		return "", err
	}
	path := modfile.ModulePath(data)
	if !strings.HasSuffix(path, "/proto") {
		return "", fmt.Errorf("proto/go.mod: module %q does not end in /proto", path)
	}
	return strings.TrimSuffix(path, "/proto"), nil
}

// rename rewrites the module prefix everywhere (go.mod files, go.work,
// imports, protobuf go_package, skaffold's ko paths and ldflags, docs), then
// regenerates the protobuf code, whose descriptors embed it. It returns the
// files it changed; on any failure the tree is left as it was.
func rename(ctx context.Context, root, to string, t *tx, generate func(context.Context, string) error) ([]string, error) {
	from, err := currentModule(root)
	if err != nil {
		return nil, err
	}
	switch {
	case to == "":
		return nil, fmt.Errorf("name the new module path: make rename MODULE=github.com/you/shop")
	case to == from:
		return nil, fmt.Errorf("the module is %s already", from)
	}
	if err := module.CheckPath(to); err != nil {
		return nil, fmt.Errorf("%q is not a module path: %w", to, err)
	}
	files, err := trackedFiles(ctx, root)
	if err != nil {
		return nil, err
	}
	var changes []change
	for _, rel := range files {
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			return nil, err
		}
		if bytes.IndexByte(data, 0) >= 0 || !bytes.Contains(data, []byte(from)) {
			continue // binary, or nothing to rename
		}
		out := bytes.ReplaceAll(data, []byte(from), []byte(to))
		// Imports and requirements are sorted by path: the new one may
		// sort elsewhere.
		switch {
		case strings.HasSuffix(rel, ".go") && !generatedCode(rel):
			out, err = format.Source(out)
		case path.Base(rel) == "go.mod":
			out, err = sortRequirements(rel, out)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		changes = append(changes, change{rel, out})
	}
	for _, c := range changes {
		if err := t.put(c.path, c.data); err != nil {
			return nil, rollback(t, err)
		}
	}
	if err := generate(ctx, root); err != nil {
		return nil, rollback(t, err)
	}
	return t.written(), nil
}

// sortRequirements sorts a go.mod's require blocks, as go mod tidy does.
func sortRequirements(name string, data []byte) ([]byte, error) {
	f, err := modfile.Parse(name, data, nil)
	if err != nil {
		return nil, err
	}
	f.SortBlocks()
	f.Cleanup()
	return modfile.Format(f.Syntax), nil
}

// trackedFiles are the repository's files: what git tracks, and new files
// it does not ignore (a service just added), relative to root.
func trackedFiles(ctx context.Context, root string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing the repository's files with git: %w", err)
	}
	var files []string
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if _, err := os.Stat(filepath.Join(root, f)); f != "" && err == nil {
			files = append(files, f)
		}
	}
	return files, nil
}
