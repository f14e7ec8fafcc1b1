# The front door: `make` lists every target. Each target installs what it
# needs (Go tools are pinned in go.mod files; Debian packages come from apt
# when run as root, or the target stops with the command to run). A target
# whose folder a fork deleted says so and does nothing (README, "Forking").

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Every module of the workspace, as package patterns.
PACKAGES = $(shell go list -m -f '{{.Path}}/...')
BIN := bin
# Every go-micro service: a folder of services/ with a main.go (the greeter,
# and each one make new-service adds).
SERVICES = $(patsubst %/main.go,./%,$(wildcard services/*/main.go))

# Pinned tools (skaffold, kustomize, the cluster's binaries) are built from
# source by tools/ into ~/.cache/micro-kubernetes, once per version; each is
# pinned by a go.mod in tools/. In a recipe, $(call tool,NAME) is the path of
# NAME: yours if it is on PATH, else the pinned one, built first (skaffold
# takes ~5 minutes the first time). Evaluated by the recipe's shell, not by
# $(shell): a failed build stops the recipe with the build's own error.
tool = $$(command -v $(1) || { cd tools && GOWORK=off go run . $(1); })
# skaffold, with kustomize on its PATH (skaffold runs kustomize from PATH).
SKAFFOLD_RUN = skaffold=$(call tool,skaffold) && kustomize=$(call tool,kustomize) && \
  PATH="$$(dirname "$$kustomize"):$$PATH" SKAFFOLD_UPDATE_CHECK=false "$$skaffold"
# make dev PROFILES=conduit,network-policies PLATFORM=linux/amd64
SKAFFOLD_FLAGS = $(if $(PROFILES),--profile=$(PROFILES)) $(if $(PLATFORM),--platform=$(PLATFORM))
# A recipe that needs a folder a fork may delete starts with $(call needs,FOLDER).
needs = @if [ ! -d $(1) ]; then echo "$(1) is not in this repository: make $@ has nothing to do"; exit 0; fi;

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "; print "Usage: make <target>"} \
	  /^##@/ {printf "\n%s\n", substr($$0, 5)} \
	  /^[a-z][a-z-]*:.*## / && $$1 != "help" {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Run on this machine

.PHONY: run
run: ## Build and run the whole application on loopback (no cluster); Ctrl-C stops it; RUNFLAGS=-help
	$(call needs,dev/run) go build -o $(BIN)/run ./dev/run && $(BIN)/run -bin $(BIN) $(RUNFLAGS)

# The version stamped into binaries (--version); images get their tag.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build
build: ## Build every service, the health sidecar, web, the API gateway and the micro toolkit into bin/, stripped and stamped with VERSION
	go build -trimpath -ldflags "-s -w -X $$(go list ./pkg/k8s).version=$(VERSION)" -o $(BIN)/ $(SERVICES) ./health ./web ./api $(if $(wildcard micro),./micro)

##@ Test

.PHONY: test
test: test-deps vet ## Unit and end-to-end tests of every module, then each fuzz target briefly (installs protoc and chromium)
	go test -timeout 15m $(TESTFLAGS) $(PACKAGES)
	cd tools && GOWORK=off go test ./...
	@$(MAKE) --no-print-directory test-stock
	@$(MAKE) --no-print-directory fuzz FUZZTIME=5000x

.PHONY: test-stock
test-stock: ## The end-to-end tests again, every process on go-micro's own gRPC server and client (MICRO_FAST_PATHS=false)
	$(call needs,test/e2e) echo '$(STOCK_TEST)' && $(STOCK_TEST)
STOCK_TEST = MICRO_FAST_PATHS=false go test -count=1 -timeout 15m $(TESTFLAGS) ./test/e2e/...

# Modules outside go.work, each with its own dependency graph.
OUTSIDE_MODULES = $(wildcard test/cluster tools tools/*/go.mod)

# Two tests at a time share the cluster's three nodes, as the tier's bounds
# were measured: go test's default is one per CPU, and a machine with more
# would put more stacks on the same nodes at once.
.PHONY: test-cluster
test-cluster: ## As root: skaffold deploys every profile to a real three-node cluster in namespaces of its own (the first run builds it: ~55 min)
	$(call needs,test/cluster) tools/need.sh runc:runc nft:nftables iptables:iptables ipset:ipset && \
	  cd test/cluster && GOWORK=off go mod tidy -diff && GOWORK=off go vet ./... && \
	  GOWORK=off go test -count=1 -parallel 2 -timeout 60m -json . | GOWORK=off go run ./recap

.PHONY: vet
vet: ## Check formatting and tidy go.mod files, and run go vet, in every module
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi
	@for d in $$(go list -m -f '{{.Dir}}'); do \
	  (cd $$d && go mod tidy -diff >/dev/null) || { echo "go.mod in $$d is not tidy: run make tidy" >&2; exit 1; }; \
	done
	go vet $(PACKAGES)
	cd tools && GOWORK=off go mod tidy -diff && GOWORK=off go vet ./...

# Each fuzz target, as package:function: every fuzz function of each
# service's handler tests (the greeter's FuzzHello, which make new-service
# copies), the web's and the API gateway's. Their seed corpora are
# committed in the packages' testdata/fuzz, and go test runs them as tests
# too. make test fuzzes by count, not time: a -fuzztime of a few seconds can
# end before the workers report, and the run fails with "context deadline
# exceeded".
FUZZ_TARGETS = $(foreach s,$(SERVICES),$(addprefix $(s)/handler:,$(shell grep -hos '^func Fuzz[A-Za-z0-9]*' $(s)/handler/*_test.go | cut -c6-))) \
  ./web/frontend:FuzzFrontend ./api/gateway:FuzzGateway
FUZZTIME ?= 1m

.PHONY: fuzz
fuzz: ## Fuzz each target for FUZZTIME (default 1m)
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzzing $${t#*:} for $(FUZZTIME)"; \
	  go test -run='^$$' -fuzz="^$${t#*:}$$" -fuzztime=$(FUZZTIME) "$${t%%:*}" || exit 1; \
	done

.PHONY: bench
bench: ## Measure the project, on its fast paths and on go-micro's, against a plain gRPC baseline (~7 minutes); writes dev/bench/results/latest.{json,md}
	$(call needs,dev/bench) go run ./dev/bench

.PHONY: test-deps
test-deps:
	@tools/need.sh protoc:protobuf-compiler chromium:chromium

##@ Deploy to your cluster

.PHONY: dev
dev: ## Build, deploy and watch (skaffold dev); PROFILES=, PLATFORM=
	@$(SKAFFOLD_RUN) dev $(SKAFFOLD_FLAGS)

.PHONY: deploy
deploy: ## Build and deploy once (skaffold run); PROFILES=, PLATFORM=
	@$(SKAFFOLD_RUN) run $(SKAFFOLD_FLAGS)

.PHONY: undeploy
undeploy: ## Delete what deploy created (skaffold delete); PROFILES=
	@$(SKAFFOLD_RUN) delete $(if $(PROFILES),--profile=$(PROFILES))

.PHONY: render
render: ## Print the manifests skaffold would apply, offline; PROFILES=
	@$(SKAFFOLD_RUN) render --offline=true --digest-source=none $(if $(PROFILES),--profile=$(PROFILES))

##@ Make it yours

.PHONY: new-service
new-service: ## Add a go-micro service next to the greeter, derived from it: make new-service NAME=orders
	$(call needs,dev/scaffold) tools/need.sh protoc:protobuf-compiler && \
	  go build -o $(BIN)/scaffold ./dev/scaffold && $(BIN)/scaffold new-service "$(NAME)"

.PHONY: rename
rename: ## Rewrite the Go module path everywhere: make rename MODULE=github.com/you/shop
	$(call needs,dev/scaffold) tools/need.sh protoc:protobuf-compiler && \
	  go build -o $(BIN)/scaffold ./dev/scaffold && $(BIN)/scaffold rename "$(MODULE)"

.PHONY: proto
proto: ## Regenerate the Go code of proto/ with the pinned protoc plugins
	@tools/need.sh protoc:protobuf-compiler
	proto/generate.sh

.PHONY: tidy
tidy: ## Run go mod tidy in every module
	@for d in $$(go list -m -f '{{.Dir}}'); do (cd $$d && go mod tidy) || exit 1; done
	@for d in $(patsubst %/go.mod,%,$(OUTSIDE_MODULES)); do (cd $$d && GOWORK=off go mod tidy) || exit 1; done

.PHONY: clean
clean: ## Remove built binaries
	rm -rf $(BIN)
