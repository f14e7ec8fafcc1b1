# The front door: `make` lists every target. Each target installs what it
# needs (Go tools are pinned in go.mod files; Debian packages come from apt
# when run as root, or the target stops with the command to run).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Every module of the workspace, as package patterns.
PACKAGES = $(shell go list -m -f '{{.Path}}/...')
BIN := bin

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "; print "Usage: make <target>\n"} /^[a-z][a-z-]*:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## Build and run the whole application on this machine (no cluster); Ctrl-C stops it
	@go build -o $(BIN)/local ./local
	@$(BIN)/local -bin $(BIN)

.PHONY: test
test: test-deps vet ## Run every module's unit and end-to-end tests (installs protoc and chromium)
	go test -timeout 10m $(PACKAGES)

.PHONY: test-deps
test-deps: ## Install what the tests need: protoc and chromium
	@scripts/need.sh protoc:protobuf-compiler chromium:chromium

.PHONY: vet
vet: ## Check formatting and run go vet in every module
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi
	go vet $(PACKAGES)

.PHONY: build
build: ## Build the greeter, health and web binaries into bin/
	go build -o $(BIN)/ ./services/greeter ./health ./web

.PHONY: proto
proto: ## Regenerate the Go code of proto/ with the pinned protoc plugins
	@scripts/need.sh protoc:protobuf-compiler
	proto/generate.sh

.PHONY: tidy
tidy: ## Run go mod tidy in every module
	@for d in $$(go list -m -f '{{.Dir}}'); do (cd $$d && go mod tidy) || exit 1; done

.PHONY: clean
clean: ## Remove built binaries
	rm -rf $(BIN)
