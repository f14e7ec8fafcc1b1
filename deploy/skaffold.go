package deploy

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Skaffold is what the checks need of skaffold.yaml: its configs, each with
// its artifacts, its kustomize paths and its profiles.
type Skaffold struct {
	Configs []SkaffoldConfig
}

// SkaffoldConfig is one document of skaffold.yaml.
type SkaffoldConfig struct {
	APIVersion string `json:"apiVersion"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Build       build     `json:"build"`
	Manifests   manifests `json:"manifests"`
	PortForward []struct {
		ResourceType string `json:"resourceType"`
		ResourceName string `json:"resourceName"`
		Port         int    `json:"port"`
		LocalPort    int    `json:"localPort"`
	} `json:"portForward"`
	Profiles []struct {
		Name      string     `json:"name"`
		Build     *build     `json:"build"`
		Manifests *manifests `json:"manifests"`
		Patches   []struct {
			Op   string `json:"op"`
			Path string `json:"path"`
		} `json:"patches"`
	} `json:"profiles"`
}

type build struct {
	Platforms []string   `json:"platforms"`
	Artifacts []artifact `json:"artifacts"`
}

type artifact struct {
	Image string `json:"image"`
	Ko    *struct {
		Main      string   `json:"main"`
		FromImage string   `json:"fromImage"`
		Flags     []string `json:"flags"`
		Ldflags   []string `json:"ldflags"`
	} `json:"ko"`
}

type manifests struct {
	Kustomize struct {
		Paths []string `json:"paths"`
	} `json:"kustomize"`
}

// LoadSkaffold reads a skaffold.yaml.
func LoadSkaffold(path string) (Skaffold, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Skaffold{}, fmt.Errorf("reading %s: %w", path, err)
	}
	var s Skaffold
	for i, doc := range splitDocuments(b) {
		var c SkaffoldConfig
		if err := yaml.Unmarshal(doc, &c); err != nil {
			return Skaffold{}, fmt.Errorf("%s, document %d: %w", path, i+1, err)
		}
		s.Configs = append(s.Configs, c)
	}
	return s, nil
}

// splitDocuments splits a multi-document YAML stream, dropping empty ones.
func splitDocuments(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if len(bytes.TrimSpace([]byte(d))) > 0 {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// Profiles are the names of every profile, in order.
func (s Skaffold) Profiles() []string {
	var names []string
	for _, c := range s.Configs {
		for _, p := range c.Profiles {
			if !slices.Contains(names, p.Name) {
				names = append(names, p.Name)
			}
		}
	}
	return names
}

// Images are the images skaffold builds with these profiles active: a
// config's active profile with a build replaces the config's.
func (s Skaffold) Images(profiles []string) []string {
	var images []string
	for _, c := range s.Configs {
		b := c.Build
		for _, p := range c.Profiles {
			if p.Build != nil && slices.Contains(profiles, p.Name) {
				b = *p.Build
			}
		}
		for _, a := range b.Artifacts {
			images = append(images, a.Image)
		}
	}
	return images
}

// ServicesDir is where the go-micro services live: an artifact built from a
// main package there is one.
const ServicesDir = "./services/"

// ServiceImages are the images of the go-micro services (see ServicesDir):
// the greeter, and every service make new-service adds.
func (s Skaffold) ServiceImages() []string {
	var images []string
	for _, b := range s.Builds() {
		for _, a := range b.Artifacts {
			if a.Ko != nil && strings.HasPrefix(a.Ko.Main, ServicesDir) {
				images = append(images, a.Image)
			}
		}
	}
	return images
}

// Builds are every build section: the configs' and their profiles'.
func (s Skaffold) Builds() []build {
	var builds []build
	for _, c := range s.Configs {
		builds = append(builds, c.Build)
		for _, p := range c.Profiles {
			if p.Build != nil {
				builds = append(builds, *p.Build)
			}
		}
	}
	return builds
}

// KustomizePaths are the kustomize folders skaffold renders with these
// profiles active, as skaffold applies them: a config's active profile
// replaces its paths; a config without the profile ignores it.
func (s Skaffold) KustomizePaths(profiles []string) ([]string, error) {
	for _, name := range profiles {
		if !slices.Contains(s.Profiles(), name) {
			return nil, fmt.Errorf("no profile %q in skaffold.yaml", name)
		}
	}
	var paths []string
	for _, c := range s.Configs {
		current := c.Manifests.Kustomize.Paths
		for _, name := range profiles {
			for _, p := range c.Profiles {
				if p.Name != name {
					continue
				}
				if len(p.Patches) > 0 {
					return nil, fmt.Errorf("profile %q patches the config; this repository's profiles replace whole fields", name)
				}
				if p.Manifests != nil && len(p.Manifests.Kustomize.Paths) > 0 {
					current = p.Manifests.Kustomize.Paths
				}
			}
		}
		paths = append(paths, current...)
	}
	return paths, nil
}
