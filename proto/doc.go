// Package proto holds the service contracts (.proto files) and the Go code
// generated from them by protoc-gen-go and go-micro's protoc-gen-micro, at the
// versions pinned as tools in go.mod. Regenerate with `make proto`.
package proto
