package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// template is the service every new service is derived from.
var template = names{Name: "greeter", Ident: "greeter", Camel: "Greeter"}

// The greeter's files that a new service gets a copy of, names rewritten:
// its folder, its protobuf package folder, and its manifests.
var (
	serviceDir = "services/" + template.Name
	protoDir   = "proto/" + template.Name
	manifest   = "deploy/base/" + template.Name + ".yaml"
)

// The files a new service is wired into.
const (
	goWork          = "go.work"
	kustomization   = "deploy/base/kustomization.yaml"
	networkPolicies = "deploy/components/network-policies/network-policies.yaml"
	skaffoldYAML    = "skaffold.yaml"
	config          = "deploy/base/config.json"
)

// generate writes the protobuf code of every package with the
// repository's own generator.
func generate(ctx context.Context, root string) error {
	if out, err := exec.CommandContext(ctx, filepath.Join(root, "proto", "generate.sh")).CombinedOutput(); err != nil {
		return fmt.Errorf("generating the protobuf code: %w\n%s", err, out)
	}
	return nil
}

// newService adds the service n next to the greeter, derived from it, and
// returns the files it wrote. On any failure the tree is left as it was.
func newService(ctx context.Context, root string, n names, t *tx, generate func(context.Context, string) error) ([]string, error) {
	if err := checkFree(root, n); err != nil {
		return nil, err
	}
	changes, err := planService(root, n)
	if err != nil {
		return nil, err
	}
	for _, c := range changes {
		if err := t.put(c.path, c.data); err != nil {
			return nil, rollback(t, err)
		}
	}
	if err := generate(ctx, root); err != nil {
		return nil, rollback(t, err)
	}
	written := t.written()
	generated, err := filepath.Glob(filepath.Join(root, "proto", n.Name, "v1", "*.go"))
	if err != nil {
		return nil, rollback(t, err)
	}
	for _, g := range generated {
		rel, _ := filepath.Rel(root, g)
		if !strings.HasSuffix(rel, "service.go") {
			written = append(written, filepath.ToSlash(rel))
		}
	}
	return written, nil
}

func rollback(t *tx, err error) error {
	if rerr := t.rollback(); rerr != nil {
		return fmt.Errorf("%w; and putting the tree back failed too: %v", err, rerr)
	}
	return fmt.Errorf("%w (nothing was changed)", err)
}

// checkFree refuses a name already in use: a folder, a manifest, an image.
func checkFree(root string, n names) error {
	for _, p := range []string{"services/" + n.Name, "proto/" + n.Name, "deploy/base/" + n.Name + ".yaml", n.Name} {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			return fmt.Errorf("%q is taken: %s exists", n.Name, p)
		}
	}
	sk, err := os.ReadFile(filepath.Join(root, skaffoldYAML))
	if err != nil {
		return err
	}
	for _, m := range regexp.MustCompile(`(?m)^\s*- image: (\S+)`).FindAllSubmatch(sk, -1) {
		if string(m[1]) == n.Name {
			return fmt.Errorf("%q is taken: skaffold.yaml builds an image of that name", n.Name)
		}
	}
	if n.Name == "config" {
		return fmt.Errorf("%q is taken: it is the ConfigMap's name", n.Name)
	}
	return nil
}

type change struct {
	path string
	data []byte
}

// planService computes every file to write, without writing any.
func planService(root string, n names) ([]change, error) {
	r := replacer(template, n)
	var changes []change
	// Copies of the greeter's own files.
	for _, dir := range []string{serviceDir, protoDir} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || generatedCode(p) {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			changes = append(changes, change{r.Replace(filepath.ToSlash(rel)), []byte(r.Replace(string(data)))})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading the greeter: %w", err)
		}
	}
	data, err := os.ReadFile(filepath.Join(root, manifest))
	if err != nil {
		return nil, err
	}
	changes = append(changes, change{r.Replace(manifest), []byte(r.Replace(string(data)))})

	// The wiring, each an edit next to the greeter's own line.
	for _, e := range []struct {
		file string
		edit func(string) (string, error)
	}{
		{goWork, func(s string) (string, error) {
			return insertAfter(s, "\t./"+serviceDir+"\n", "\t./services/"+n.Name+"\n")
		}},
		{kustomization, func(s string) (string, error) {
			return insertAfter(s, "  - "+path.Base(manifest)+"\n", "  - "+n.Name+".yaml\n")
		}},
		{networkPolicies, func(s string) (string, error) { return addPolicies(s, r, n) }},
		{skaffoldYAML, func(s string) (string, error) { return addArtifact(s, n) }},
		{config, func(s string) (string, error) { return allowInGateway(s, r) }},
	} {
		data, err := os.ReadFile(filepath.Join(root, e.file))
		if err != nil {
			return nil, err
		}
		out, err := e.edit(string(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.file, err)
		}
		changes = append(changes, change{e.file, []byte(out)})
	}
	return changes, nil
}

// generatedCode is protoc's output: generated again for the new service,
// not copied (its descriptors are binary).
func generatedCode(p string) bool {
	return strings.HasSuffix(p, ".pb.go") || strings.HasSuffix(p, ".pb.micro.go")
}

// insertAfter inserts add after the one line anchor of s.
func insertAfter(s, anchor, add string) (string, error) {
	if strings.Count(s, anchor) != 1 {
		return "", fmt.Errorf("expected the line %q once", strings.TrimSpace(anchor))
	}
	return strings.Replace(s, anchor, anchor+add, 1), nil
}

// addPolicies appends a copy of every network policy of the greeter's (its
// ingress, and the web's egress to it), and lets Prometheus scrape it.
func addPolicies(s string, r *strings.Replacer, n names) (string, error) {
	var copies []string
	for _, doc := range strings.Split(s, "\n---\n") {
		if regexp.MustCompile(`(?m)^  name: .*\b` + template.Name + `\b`).MatchString(doc) {
			copies = append(copies, r.Replace(strings.TrimRight(doc, "\n")))
		}
	}
	if len(copies) == 0 {
		return "", fmt.Errorf("found no policy of the %s's to copy", template.Name)
	}
	scrape := regexp.MustCompile(`(?m)^(\s+values: \[.*\b` + template.Name + `\b[^\]]*)\]`)
	if len(scrape.FindAllString(s, -1)) != 1 {
		return "", fmt.Errorf("expected one metrics policy listing %s", template.Name)
	}
	s = scrape.ReplaceAllString(s, "${1}, "+n.Name+"]")
	return strings.TrimRight(s, "\n") + "\n---\n" + strings.Join(copies, "\n---\n") + "\n", nil
}

// allowInGateway puts the new service's endpoint on the API gateway's
// allow-list, next to the greeter's: a service made by make new-service is
// reachable through the gateway like the greeter.
func allowInGateway(s string, r *strings.Replacer) (string, error) {
	entry := regexp.MustCompile(`(?m)^(\s*)("` + template.Name + `": \[.*\])(,?)$`)
	if len(entry.FindAllString(s, -1)) != 1 {
		return "", fmt.Errorf("expected one line allowing the %s's endpoints", template.Name)
	}
	out := entry.ReplaceAllStringFunc(s, func(line string) string {
		m := entry.FindStringSubmatch(line)
		return m[1] + m[2] + ",\n" + m[1] + r.Replace(m[2]) + m[3]
	})
	if !json.Valid([]byte(out)) {
		return "", errors.New("the edit would leave invalid JSON")
	}
	return out, nil
}

// addArtifact adds the service's image to skaffold.yaml, built like the
// greeter's (the shared ko settings), after the last artifact of the
// application's config.
func addArtifact(s string, n names) (string, error) {
	deps := regexp.MustCompile(`(?m)^(\s+)paths: (\[.*"` + serviceDir + `"\])$`).FindStringSubmatch(s)
	if deps == nil {
		return "", fmt.Errorf("found no dependencies of the %s's artifact", template.Name)
	}
	block := fmt.Sprintf("    - image: %s\n      ko:\n        <<: *ko\n        main: ./services/%s\n        dependencies:\n          paths: %s\n",
		n.Name, n.Name, strings.Replace(deps[2], serviceDir, "services/"+n.Name, 1))
	anchor := "manifests:\n  kustomize:\n    paths: [\"deploy/base\"]\n"
	if strings.Count(s, anchor) != 1 {
		return "", fmt.Errorf("expected the application's manifests once")
	}
	return strings.Replace(s, anchor, block+anchor, 1), nil
}

// list lists paths one a line.
func list(paths []string) string {
	var b bytes.Buffer
	for _, p := range paths {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	return b.String()
}
