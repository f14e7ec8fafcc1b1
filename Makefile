# The front door: `make` lists every target. Each target installs what it
# needs (Go tools are pinned in go.mod files; Debian packages come from apt
# when run as root, or the target stops with the command to run).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Every module of the workspace, as package patterns.
PACKAGES = $(shell go list -m -f '{{.Path}}/...')
BIN := bin
# Every go-micro service: a folder of services/ with a main.go (the greeter,
# and each one make new-service adds).
SERVICES = $(patsubst %/main.go,./%,$(wildcard services/*/main.go))

# Pinned tools (skaffold, kustomize, the control plane of test-cluster) are
# built from source by tools/ into ~/.cache/micro-kubernetes, once per
# version; their versions are in tools/*/go.mod and cluster/go.mod.
TOOL = $(shell cd tools && GOWORK=off go run . $(1))
# skaffold and kustomize: yours if they are on PATH, else the pinned ones
# (skaffold takes ~5 minutes to build the first time).
SKAFFOLD = $(or $(shell command -v skaffold),$(call TOOL,skaffold))
KUSTOMIZE = $(or $(shell command -v kustomize),$(call TOOL,kustomize))
# skaffold runs kustomize from PATH.
SKAFFOLD_RUN = PATH="$(dir $(KUSTOMIZE)):$$PATH" SKAFFOLD_UPDATE_CHECK=false $(SKAFFOLD)
# make dev PROFILES=conduit,network-policies PLATFORM=linux/amd64
SKAFFOLD_FLAGS = $(if $(PROFILES),--profile=$(PROFILES)) $(if $(PLATFORM),--platform=$(PLATFORM))

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "; print "Usage: make <target>\n"} /^[a-z][a-z-]*:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## Build and run the whole application on this machine (no cluster); Ctrl-C stops it
	@go build -o $(BIN)/local ./local
	@$(BIN)/local -bin $(BIN)

.PHONY: test
test: test-deps vet ## Run every module's unit and end-to-end tests, then each fuzz target briefly (installs protoc and chromium)
	go test -timeout 10m $(PACKAGES)
	cd tools && GOWORK=off go test ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=5000x

# Each fuzz target, as package:function: every service's FuzzHello (make
# new-service copies the greeter's) and the web's. Their seed corpora are committed in
# the packages' testdata/fuzz, and go test runs them as tests too. make test
# fuzzes by count, not time: a -fuzztime of a few seconds can end before the
# workers report, and the run fails with "context deadline exceeded".
FUZZ_TARGETS = $(addsuffix /handler:FuzzHello,$(SERVICES)) ./web/frontend:FuzzFrontend
FUZZTIME ?= 1m

.PHONY: fuzz
fuzz: ## Fuzz each target for FUZZTIME (default 1m)
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzzing $${t#*:} for $(FUZZTIME)"; \
	  go test -run='^$$' -fuzz="^$${t#*:}$$" -fuzztime=$(FUZZTIME) "$${t%%:*}" || exit 1; \
	done

# Modules outside go.work, each with its own dependency graph.
OUTSIDE_MODULES := cluster tools tools/skaffold tools/kustomize tools/kwok

.PHONY: test-cluster
test-cluster: ## Apply every skaffold profile to a real Kubernetes control plane on loopback (the first run builds it: ~20 min)
	@cd tools && GOWORK=off go run . kube-apiserver kube-controller-manager kube-scheduler kubectl kwok skaffold kustomize >/dev/null
	cd cluster && GOWORK=off go mod tidy -diff && GOWORK=off go vet ./... && GOWORK=off go test -count=1 -timeout 20m .

.PHONY: test-images
test-images: ## Build the images with skaffold (ko) and run them with podman as the manifests do; prints their sizes (installs podman and runc)
	@scripts/need.sh podman:podman runc:runc
	@cd tools && GOWORK=off go run . skaffold kustomize >/dev/null
	cd cluster && GOWORK=off go test -count=1 -timeout 20m -v ./images/

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
	cd tools && GOWORK=off go mod tidy -diff && GOWORK=off go vet ./...

.PHONY: dev
dev: ## Build, deploy and watch on your cluster (skaffold dev); PROFILES=, PLATFORM=
	$(SKAFFOLD_RUN) dev $(SKAFFOLD_FLAGS)

.PHONY: deploy
deploy: ## Build and deploy once (skaffold run); PROFILES=, PLATFORM=
	$(SKAFFOLD_RUN) run $(SKAFFOLD_FLAGS)

.PHONY: undeploy
undeploy: ## Delete what deploy created (skaffold delete); PROFILES=
	$(SKAFFOLD_RUN) delete $(if $(PROFILES),--profile=$(PROFILES))

.PHONY: render
render: ## Print the manifests skaffold would apply, offline; PROFILES=
	@$(SKAFFOLD_RUN) render --offline=true --digest-source=none $(if $(PROFILES),--profile=$(PROFILES))

.PHONY: bench
bench: ## Measure the project against a plain gRPC baseline (~1 minute); writes local/bench/results/latest.{json,md}
	go run ./local/bench

# The version stamped into binaries (--version); images get their tag.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build
build: ## Build every service, the health sidecar and web into bin/, stripped and stamped with VERSION
	go build -trimpath -ldflags "-s -w -X $$(go list ./pkg/k8s).version=$(VERSION)" -o $(BIN)/ $(SERVICES) ./health ./web

.PHONY: proto
proto: ## Regenerate the Go code of proto/ with the pinned protoc plugins
	@scripts/need.sh protoc:protobuf-compiler
	proto/generate.sh

.PHONY: new-service
new-service: ## Add a go-micro service next to the greeter, derived from it: make new-service NAME=orders
	@scripts/need.sh protoc:protobuf-compiler
	@go build -o $(BIN)/template ./local/template && $(BIN)/template new-service "$(NAME)"

.PHONY: rename
rename: ## Rewrite the Go module path everywhere: make rename MODULE=github.com/you/shop
	@scripts/need.sh protoc:protobuf-compiler
	@go build -o $(BIN)/template ./local/template && $(BIN)/template rename "$(MODULE)"

.PHONY: tidy
tidy: ## Run go mod tidy in every module
	@for d in $$(go list -m -f '{{.Dir}}'); do (cd $$d && go mod tidy) || exit 1; done
	@for d in $(OUTSIDE_MODULES); do (cd $$d && GOWORK=off go mod tidy) || exit 1; done

.PHONY: clean
clean: ## Remove built binaries
	rm -rf $(BIN)
