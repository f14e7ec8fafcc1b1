// Package deploy renders the manifests of deploy/ the way skaffold.yaml
// deploys them, profile by profile, decodes every object strictly into its
// Kubernetes 1.37 type, and holds the checks that the manifests agree with
// the code. Its tests run them; the cluster and image tests reuse Render.
package deploy
