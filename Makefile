# aiquota: the README's two commands are `make run-local` (the product on an embedded
# default: local API server, simulator, manager, sidecars) and `make test` (everything).

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
ROOT := $(CURDIR)
BIN := $(ROOT)/bin
export GOFLAGS ?= -buildvcs=false

## Pinned tools (installed into bin/ with `go install`, reused while the pin holds).
CONTROLLER_GEN_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.7.1
HELM_VERSION ?= v3.22.0
GOLANGCI_LINT_VERSION ?= v2.15.0
# kube-api-linter has no releases; a pseudo-version pins its commit.
KUBE_API_LINTER_VERSION ?= v0.0.0-20260716143926-092fe0c72997

CONTROLLER_GEN := $(BIN)/controller-gen
KUSTOMIZE := $(BIN)/kustomize
HELM := $(BIN)/helm
GOLANGCI_LINT := $(BIN)/golangci-lint
GOLANGCI_LINT_KAL := $(BIN)/golangci-lint-kal

# The tests' kube-apiserver and etcd, built from source at the versions pinned in
# hack/envtest/go.mod; the first build takes minutes, later ones are instant. A
# KUBEBUILDER_ASSETS set in the environment (setup-envtest's binaries) is used instead.
KUBEBUILDER_ASSETS ?= $(shell $(ROOT)/hack/build-control-plane.sh)

.PHONY: all
all: build

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate CRDs, RBAC and webhook configuration from markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases
	go run ./hack/chartsync

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: docs
docs: ## Regenerate docs/reference.md from the CRDs.
	go run ./hack/apidocs > docs/reference.md

.PHONY: verify-generated
verify-generated: controller-gen ## Fail if generated code or manifests are stale.
	hack/verify-generated.sh "$(CONTROLLER_GEN)"

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: lint
lint: golangci-lint golangci-lint-kal ## golangci-lint with .golangci.yml; kube-api-linter on the API types with .golangci-kal.yml.
	$(GOLANGCI_LINT) run ./...
	$(GOLANGCI_LINT_KAL) run --config .golangci-kal.yml ./api/...

.PHONY: build
build: plugin ## Build the manager, limiter, simulator and kubectl plugin binaries into bin/.
	go build -o $(BIN)/manager ./cmd/manager
	go build -o $(BIN)/limiter ./cmd/limiter
	go build -o $(BIN)/providersim ./cmd/providersim

.PHONY: plugin
plugin: ## Build the kubectl plugin into bin/kubectl-aiquota (on PATH it is `kubectl aiquota`).
	go build -o $(BIN)/kubectl-aiquota ./cmd/kubectl-aiquota

IMG_MANAGER ?= aiquota/manager:dev
IMG_LIMITER ?= aiquota/limiter:dev
CONTAINER_TOOL ?= docker

.PHONY: docker-build
docker-build: ## Build the manager and limiter images (IMG_MANAGER, IMG_LIMITER; CONTAINER_TOOL=podman works too).
	$(CONTAINER_TOOL) build --target manager -t $(IMG_MANAGER) .
	$(CONTAINER_TOOL) build --target limiter -t $(IMG_LIMITER) .

##@ Test

.PHONY: envtest
envtest: ## Build (once) the kube-apiserver and etcd the tests use, or take KUBEBUILDER_ASSETS as set; print their directory.
	@echo $(KUBEBUILDER_ASSETS)

.PHONY: test
test: tools vet lint verify-generated ## Vet, lint, check generated files, run all tests on a real API server.
	KUBEBUILDER_ASSETS="$(KUBEBUILDER_ASSETS)" HELM="$(HELM)" KUSTOMIZE="$(KUSTOMIZE)" \
		go test -count=1 -timeout 40m ./...

.PHONY: test-adversarial
test-adversarial: ## Hostile-user probes against real limiter, simulator and manager processes (part of `make test`).
	KUBEBUILDER_ASSETS="$(KUBEBUILDER_ASSETS)" go test -count=1 -timeout 10m -v ./test/adversarial/...

.PHONY: test-short
test-short: ## Unit tests only (no API server).
	go test -short ./...

##@ Benchmarks

.PHONY: bench
bench: ## Go micro-benchmarks: limit decision, parsing, tokenizing, simulator, webhook.
	go test -run '^$$' -bench . -benchmem ./internal/limiter ./internal/provider ./internal/simulator ./internal/webhook

.PHONY: bench-proxy
bench-proxy: ## Limiter vs a plain Go reverse proxy vs direct, end to end on real processes (about 15 min; waits for load < 1). ARGS adds proxybench flags.
	@mkdir -p $(BIN)
	go run ./test/bench/cmd/proxybench -rate 1000 -max-load 1.0 -json $(BIN)/bench-proxy.json -out $(BIN)/bench-proxy.md $(ARGS)

.PHONY: bench-quota
bench-quota: ## One account shared by N real limiter processes: issue 10's scenarios, leases vs full limit per pod vs static limit / N (about 10 min). ARGS adds quotabench flags (-stretch 3, -run NAME).
	KUBEBUILDER_ASSETS="$(KUBEBUILDER_ASSETS)" go run ./test/quotabench/cmd/quotabench -out $(BIN)/bench-quota.md $(ARGS)

.PHONY: bench-scale
bench-scale: ## Control channel and leases at scale on a real API server: 1,000 then 5,000 reporting sidecars (200 then 1,000 ProviderQuotas; 10-20 min).
	KUBEBUILDER_ASSETS="$(KUBEBUILDER_ASSETS)" go test ./test/e2e -run '^$$' -bench BenchmarkStatusScale -benchtime 1x -timeout 60m -v

##@ Run

.PHONY: run-local
run-local: ## The whole product on an embedded default: API server, simulator, manager, an injected pod's sidecar under traffic (ARGS=--once exits when status shows it).
	KUBEBUILDER_ASSETS="$(KUBEBUILDER_ASSETS)" go run ./hack/localenv $(ARGS)

##@ Tools

.PHONY: tools
tools: controller-gen kustomize helm golangci-lint golangci-lint-kal ## Install every pinned tool into bin/.

.PHONY: controller-gen
controller-gen:
	@hack/install-tool.sh controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen $(CONTROLLER_GEN_VERSION)

.PHONY: kustomize
kustomize:
	@hack/install-tool.sh kustomize sigs.k8s.io/kustomize/kustomize/v5 $(KUSTOMIZE_VERSION)

.PHONY: helm
helm:
	@hack/install-tool.sh helm helm.sh/helm/v3/cmd/helm $(HELM_VERSION)

.PHONY: golangci-lint
golangci-lint:
	@hack/install-tool.sh golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint $(GOLANGCI_LINT_VERSION)

# The linter's standalone form: golangci-lint with kube-api-linter built in as a
# module, from the Go module proxy alone (`golangci-lint custom` would clone
# golangci-lint's repository).
.PHONY: golangci-lint-kal
golangci-lint-kal:
	@hack/install-tool.sh golangci-lint-kal sigs.k8s.io/kube-api-linter/cmd/golangci-lint-kube-api-linter $(KUBE_API_LINTER_VERSION)
