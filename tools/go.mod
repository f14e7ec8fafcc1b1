// The tool builder (go run . NAME): builds the pinned command-line tools
// from source into a cache keyed by version. Each tool is pinned by a module
// of its own (tools/NAME), outside go.work, so their dependencies never mix
// with the application's. No dependencies of its own.
module github.com/micro/kubernetes/tools

go 1.26.0
