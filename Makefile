# Brokerflow workspace Makefile. `make` (or `make help`) lists the targets.
#
# The repository root is a go.work workspace, not a module: `go test ./...` fails here, so
# workspace-wide commands use the `work` pattern, and per-module commands loop over the
# modules that go.work lists.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules
.DEFAULT_GOAL := help

# ---------------------------------------------------------------------------------------------
# Pinned tools. Each is installed with `go install pkg@version` as $(BIN)/<name>-<version>, and
# $(BIN)/<name> is a symlink to it, so changing a version here reinstalls on the next use.

BIN := $(CURDIR)/.bin

BUF_PKG                    := github.com/bufbuild/buf/cmd/buf
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_PKG          := google.golang.org/protobuf/cmd/protoc-gen-go
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_PKG     := google.golang.org/grpc/cmd/protoc-gen-go-grpc
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
GOLANGCI_LINT_PKG          := github.com/golangci/golangci-lint/v2/cmd/golangci-lint
GOLANGCI_LINT_VERSION      := v2.15.0
NATS_PKG                   := github.com/nats-io/natscli/nats
NATS_VERSION               := v0.5.0

BUF                := $(BIN)/buf
PROTOC_GEN_GO      := $(BIN)/protoc-gen-go
PROTOC_GEN_GO_GRPC := $(BIN)/protoc-gen-go-grpc
GOLANGCI_LINT      := $(BIN)/golangci-lint
NATS               := $(BIN)/nats
TOOLS := $(BUF) $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC) $(GOLANGCI_LINT) $(NATS)

# ---------------------------------------------------------------------------------------------
# Knobs.

RUN_FLAGS   ?= --sandbox
BENCH_FLAGS ?=
FUZZTIME    ?= 30s
TEST_FLAGS  ?= -race -count=1 -timeout 15m
# Tests save what a person should look at (the dashboard's screenshot, dashboard.png) with
# t.ArtifactDir: `make test` keeps them under TEST_OUTPUT/_artifacts/ (one directory per test, its
# name chosen by go test), and `make clean` removes them.
TEST_OUTPUT := $(CURDIR)/test-output
# The deploy tests (deploy/test) are a module outside the workspace, run with GOWORK=off so that
# the Kubernetes, kustomize and Prometheus modules they need never move the workspace's versions.
# No -race: they run no goroutines of their own, and race-building Kubernetes's types is slow.
DEPLOY_TEST_DIR   := deploy/test
DEPLOY_TEST_FLAGS ?= -count=1 -timeout 20m
# `make images`: each service's image is $(IMAGE_PREFIX)/<service>:$(IMAGE_TAG).
IMAGE_PREFIX ?= brokerflow
IMAGE_TAG    ?= dev

# Scales the deadlines of tests that wait for work to settle; passed through only when set.
ifdef BROKERFLOW_TEST_TIMEOUT_SCALE
export BROKERFLOW_TEST_TIMEOUT_SCALE
endif

# Directories of the workspace modules (proto, pkg, services/*), from go.work.
# Recursively expanded, so `go list` only runs when a recipe needs it.
MODULE_DIRS = $(shell go list -m -f '{{.Dir}}')
# Every Go module the linters cover: the workspace's, and the deploy tests outside it.
LINT_DIRS = $(MODULE_DIRS) $(CURDIR)/$(DEPLOY_TEST_DIR)

# ---------------------------------------------------------------------------------------------

.PHONY: help
help: ## Show this help
	@echo 'Usage: make <target> [VAR=value ...]'
	@echo
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'
	@echo
	@echo 'Variables: RUN_FLAGS=$(RUN_FLAGS) BENCH_FLAGS=$(BENCH_FLAGS) FUZZTIME=$(FUZZTIME)'
	@echo '           BROKERFLOW_TEST_TIMEOUT_SCALE (env, optional) scales test deadlines'

.PHONY: run
run: ## Run the whole system locally against the sandbox (RUN_FLAGS, default --sandbox)
	go run ./services/brokerflow run $(RUN_FLAGS)

.PHONY: test
# deploy/test runs beside the workspace's tests, which spend much of their time waiting on the
# systems they start; its output is printed after theirs, and either failing fails the target.
test: test-deps ## Run every test: the workspace's (-race; fuzz targets over their seed corpora) and deploy/test, at once
	@mkdir -p '$(TEST_OUTPUT)'
	@echo '>> deploy/test (GOWORK=off go test $(DEPLOY_TEST_FLAGS) ./...) runs beside the workspace; its output follows it'
	@rm -f '$(TEST_OUTPUT)/deploy-test.rc'; \
	(rc=0; cd $(DEPLOY_TEST_DIR) && GOWORK=off go test $(DEPLOY_TEST_FLAGS) ./... > '$(TEST_OUTPUT)/deploy-test.log' 2>&1 || rc=$$?; \
	  echo $$rc > '$(TEST_OUTPUT)/deploy-test.rc') & \
	ws=0; go test $(TEST_FLAGS) -artifacts -outputdir '$(TEST_OUTPUT)' work || ws=$$?; \
	wait; echo '>> deploy/test:'; cat '$(TEST_OUTPUT)/deploy-test.log'; \
	[ $$ws -eq 0 ] && [ "$$(cat '$(TEST_OUTPUT)/deploy-test.rc' 2>/dev/null)" = 0 ]

.PHONY: test-deps
test-deps: ## Install PostgreSQL and Chromium for the tests when missing (apt-get, as root; scripts/test-deps)
	@scripts/test-deps

.PHONY: test-deploy
test-deploy: ## Run only the deploy tests (deploy/test: manifests, NATS values, image binaries)
	cd $(DEPLOY_TEST_DIR) && GOWORK=off go test $(DEPLOY_TEST_FLAGS) ./...

.PHONY: binaries
binaries: ## Build every service's static binary into bin/ (scripts/build-service)
	@for svc in $$(scripts/build-service --list); do \
		echo ">> scripts/build-service $$svc bin"; scripts/build-service "$$svc" bin; \
	done

.PHONY: images
images: ## Build every service's image, $(IMAGE_PREFIX)/<service>:$(IMAGE_TAG) (needs docker or CONTAINER_TOOL)
	@for svc in $$(scripts/build-service --list); do \
		echo ">> scripts/build-service --image $$svc $(IMAGE_PREFIX)/$$svc:$(IMAGE_TAG)"; \
		scripts/build-service --image "$$svc" "$(IMAGE_PREFIX)/$$svc:$(IMAGE_TAG)"; \
	done

.PHONY: proto
proto: $(BUF) $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC) ## Lint the .proto files and regenerate Go code with buf (stale generated files removed)
	cd proto && PATH="$(BIN):$$PATH" buf lint
	@# buf's own `clean: true` refuses an output directory of `.`, and the schemas sit beside
	@# their generated Go (proto/brokerflow/<domain>/v1); so the generated files are removed
	@# here, and a removed .proto leaves nothing behind.
	find proto/brokerflow -name '*.pb.go' -delete
	cd proto && PATH="$(BIN):$$PATH" buf generate

.PHONY: checkgenerate
checkgenerate: proto ## Fail if `make proto` changes anything under proto/
	@changes="$$(git status --porcelain --untracked-files=all -- proto)"; \
	if [[ -n "$$changes" ]]; then \
		echo 'checkgenerate: `make proto` left changes under proto/; run it and commit the result:' >&2; \
		echo "$$changes" >&2; \
		git --no-pager diff -- proto >&2; \
		exit 1; \
	fi
	@echo 'checkgenerate: proto/ is up to date'

# The baseline is a buf image of the schemas as last recorded on purpose. CI compares with it
# rather than with main: on a fresh clone of main, main would be compared with itself.
PROTO_BASELINE := proto/baseline.binpb

.PHONY: breaking
breaking: $(BUF) ## Fail if the schemas break compatibility (buf FILE rules) with proto/baseline.binpb
	@cd proto && $(BUF) breaking --against '$(CURDIR)/$(PROTO_BASELINE)' || { \
		echo 'breaking: the schemas break compatibility with $(PROTO_BASELINE) (see above).' >&2; \
		echo '          Prefer a new field or message. If the break is intended, run' >&2; \
		echo '          `make proto-baseline` and commit the new baseline with the change.' >&2; \
		exit 1; \
	}
	@echo 'breaking: the schemas are compatible with $(PROTO_BASELINE)'

.PHONY: proto-baseline
proto-baseline: $(BUF) ## Record the schemas as the new breaking-change baseline (on purpose; commit it)
	cd proto && $(BUF) build --exclude-source-info -o '$(CURDIR)/$(PROTO_BASELINE)'

.PHONY: lint
lint: $(GOLANGCI_LINT) $(BUF) ## gofmt, go vet, golangci-lint in every module (and deploy/test), buf lint
	@echo '>> gofmt -l'
	@unformatted="$$(gofmt -l $(LINT_DIRS))"; \
	if [[ -n "$$unformatted" ]]; then \
		echo 'gofmt: these files need `gofmt -w`:' >&2; echo "$$unformatted" >&2; exit 1; \
	fi
	@echo '>> go vet work'
	@go vet work
	@echo '>> go vet ./... ($(DEPLOY_TEST_DIR), GOWORK=off)'
	@cd $(DEPLOY_TEST_DIR) && GOWORK=off go vet ./...
	@failed=(); \
	for dir in $(LINT_DIRS); do \
		if [[ -z "$$(find "$$dir" -name '*.go' -not -path '*/testdata/*' -print -quit)" ]]; then \
			echo ">> golangci-lint: skipping $${dir#$(CURDIR)/} (no Go files yet)"; continue; \
		fi; \
		echo ">> golangci-lint run ./... ($${dir#$(CURDIR)/})"; \
		gowork=; [[ "$$dir" == '$(CURDIR)/$(DEPLOY_TEST_DIR)' ]] && gowork=off; \
		(cd "$$dir" && GOWORK=$$gowork $(GOLANGCI_LINT) run --config '$(CURDIR)/.golangci.yml' ./...) \
			|| failed+=("$${dir#$(CURDIR)/}"); \
	done; \
	if (( $${#failed[@]} )); then echo "golangci-lint failed in: $${failed[*]}" >&2; exit 1; fi
	@echo '>> buf lint'
	@cd proto && $(BUF) lint

.PHONY: fuzz
fuzz: ## Run each fuzz target in the workspace for FUZZTIME (default 30s)
	@found=0; \
	while IFS= read -r file; do \
		dir="$$(dirname "$$file")"; \
		for name in $$(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/p' "$$file"); do \
			found=1; \
			echo ">> $$name ($${dir#$(CURDIR)/})"; \
			(cd "$$dir" && go test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) .); \
		done; \
	done < <(grep -rlE --include='*_test.go' --exclude-dir=testdata '^func Fuzz' $(MODULE_DIRS) | sort); \
	if (( ! found )); then echo 'fuzz: no fuzz targets found' >&2; fi

.PHONY: bench
bench: ## Run the brokerflow benchmark program (BENCH_FLAGS)
	go run ./services/brokerflow/cmd/brokerflow-bench $(BENCH_FLAGS)

.PHONY: tools
tools: $(TOOLS) ## Install the pinned tools into .bin/

.PHONY: tidy
tidy: ## Run go mod tidy in every module (deploy/test with GOWORK=off)
	@for dir in $(MODULE_DIRS); do \
		echo ">> go mod tidy ($${dir#$(CURDIR)/})"; \
		(cd "$$dir" && go mod tidy); \
	done
	@echo '>> go mod tidy ($(DEPLOY_TEST_DIR), GOWORK=off)'
	@cd $(DEPLOY_TEST_DIR) && GOWORK=off go mod tidy

.PHONY: clean
clean: ## Remove the installed tools (.bin/) and test and bench output
	rm -rf '$(BIN)' bin '$(TEST_OUTPUT)'
	rm -f bench.out
	find . -path ./.git -prune -o -type f \( -name '*.test' -o -name '*.out' \) -print -exec rm -f {} +

# ---------------------------------------------------------------------------------------------
# Tool installation.

.PHONY: FORCE
FORCE:

# $(call relink_if_stale,name,version): FORCE unless $(BIN)/name already points at name-version
# (timestamps alone miss a switch back to an older, already installed version).
relink_if_stale = $(if $(filter $(1)-$(2),$(shell readlink '$(BIN)/$(1)' 2>/dev/null)),,FORCE)

# $(call go_tool,name,package,version): rules for $(BIN)/name-version and the $(BIN)/name link.
define go_tool
$(BIN)/$(1)-$(3):
	@mkdir -p '$(BIN)'
	@echo '>> go install $(2)@$(3)'
	@tmp="$$$$(mktemp -d)"; trap 'rm -rf "$$$$tmp"' EXIT; \
		GOBIN="$$$$tmp" GOWORK=off go install '$(2)@$(3)'; \
		mv "$$$$tmp/$(1)" '$$@'

$(BIN)/$(1): $(BIN)/$(1)-$(3) $$(call relink_if_stale,$(1),$(3))
	@ln -sfn '$(1)-$(3)' '$$@'
endef

$(eval $(call go_tool,buf,$(BUF_PKG),$(BUF_VERSION)))
$(eval $(call go_tool,protoc-gen-go,$(PROTOC_GEN_GO_PKG),$(PROTOC_GEN_GO_VERSION)))
$(eval $(call go_tool,protoc-gen-go-grpc,$(PROTOC_GEN_GO_GRPC_PKG),$(PROTOC_GEN_GO_GRPC_VERSION)))
$(eval $(call go_tool,golangci-lint,$(GOLANGCI_LINT_PKG),$(GOLANGCI_LINT_VERSION)))
$(eval $(call go_tool,nats,$(NATS_PKG),$(NATS_VERSION)))
