# The front door: `make` lists every target. Each target installs what it
# needs (Go tools are pinned in go.mod files; Debian packages come from apt
# when run as root, or the target stops with the command to run).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Every module of the workspace, as package patterns.
PACKAGES = $(shell go list -m -f '{{.Path}}/...')
BIN := bin

# skaffold and kustomize: yours if they are on PATH, else built here, pinned
# in tools/ (skaffold takes ~5 minutes to build the first time).
SKAFFOLD_VERSION := v2.16.1
SKAFFOLD := $(or $(shell command -v skaffold),$(BIN)/skaffold)
KUSTOMIZE := $(or $(shell command -v kustomize),$(BIN)/kustomize)
# skaffold runs kustomize from PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export SKAFFOLD_UPDATE_CHECK := false
# make dev PROFILES=conduit,network-policies PLATFORM=linux/amd64
SKAFFOLD_FLAGS = $(if $(PROFILES),--profile=$(PROFILES)) $(if $(PLATFORM),--platform=$(PLATFORM))

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "; print "Usage: make <target>\n"} /^[a-z][a-z-]*:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## Build and run the whole application on this machine (no cluster); Ctrl-C stops it
	@go build -o $(BIN)/local ./local
	@$(BIN)/local -bin $(BIN)

.PHONY: test
test: test-deps vet ## Run every module's unit and end-to-end tests, then each fuzz target briefly (installs protoc and chromium)
	go test -timeout 10m $(PACKAGES)
	@$(MAKE) --no-print-directory fuzz FUZZTIME=5000x

# Each fuzz target, as package:function. Their seed corpora are committed in
# the packages' testdata/fuzz, and go test runs them as tests too. make test
# fuzzes by count, not time: a -fuzztime of a few seconds can end before the
# workers report, and the run fails with "context deadline exceeded".
FUZZ_TARGETS := ./services/greeter/handler:FuzzHello ./web/frontend:FuzzFrontend
FUZZTIME ?= 1m

.PHONY: fuzz
fuzz: ## Fuzz each target for FUZZTIME (default 1m)
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzzing $${t#*:} for $(FUZZTIME)"; \
	  go test -run='^$$' -fuzz="^$${t#*:}$$" -fuzztime=$(FUZZTIME) "$${t%%:*}" || exit 1; \
	done

.PHONY: test-deps
test-deps: ## Install what the tests need: protoc and chromium
	@scripts/need.sh protoc:protobuf-compiler chromium:chromium

.PHONY: vet
vet: ## Check formatting, tidy go.mod files, and run go vet in every module
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi
	@for d in $$(go list -m -f '{{.Dir}}'); do \
	  (cd $$d && go mod tidy -diff >/dev/null) || { echo "go.mod in $$d is not tidy: run make tidy" >&2; exit 1; }; \
	done
	go vet $(PACKAGES)

.PHONY: dev
dev: $(SKAFFOLD) $(KUSTOMIZE) ## Build, deploy and watch on your cluster (skaffold dev); PROFILES=, PLATFORM=
	$(SKAFFOLD) dev $(SKAFFOLD_FLAGS)

.PHONY: deploy
deploy: $(SKAFFOLD) $(KUSTOMIZE) ## Build and deploy once (skaffold run); PROFILES=, PLATFORM=
	$(SKAFFOLD) run $(SKAFFOLD_FLAGS)

.PHONY: undeploy
undeploy: $(SKAFFOLD) $(KUSTOMIZE) ## Delete what deploy created (skaffold delete); PROFILES=
	$(SKAFFOLD) delete $(if $(PROFILES),--profile=$(PROFILES))

.PHONY: render
render: $(SKAFFOLD) $(KUSTOMIZE) ## Print the manifests skaffold would apply, offline; PROFILES=
	@$(SKAFFOLD) render --offline=true --digest-source=none $(if $(PROFILES),--profile=$(PROFILES))

$(BIN)/skaffold: tools/skaffold/go.mod
	cd tools/skaffold && GOWORK=off go build -o $(CURDIR)/$@ \
	  -ldflags "-X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version=$(SKAFFOLD_VERSION)" \
	  github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold

$(BIN)/kustomize: tools/kustomize/go.mod
	cd tools/kustomize && GOWORK=off go build -o $(CURDIR)/$@ sigs.k8s.io/kustomize/kustomize/v5

.PHONY: bench
bench: ## Measure the project against a plain gRPC baseline (~1 minute); writes local/bench/results/latest.{json,md}
	go run ./local/bench

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
