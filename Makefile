# Channel billing platform. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
export GOFLAGS ?= -mod=mod
STATICCHECK_VERSION ?= v0.6.1

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN{FS=":.*## "}{printf "  %-18s %s\n",$$1,$$2}'

local: ## run the platform locally: emulators, table, admin, API on 127.0.0.1:$${PORT:-8080}
	$(GO) run ./local

demo: ## bill one month of a small channel end to end on a fresh local stack and print the report (about 5 s once built)
	$(GO) run ./local/demo

bench-billing: ## billing run benchmark: 10,000 tenants on the local stack (ARGS="-tenants 1000" for a smaller one); not part of make test
	$(GO) run ./local/benchbilling $(ARGS)

test: go-test infra-check ## run the whole test suite (installs what it needs on first use)

go-test: emulators ## the Go tests of the platform, with the race detector, against the emulators
	$(GO) test -race -count=1 -timeout 20m ./...

lint: ## gofmt, go vet, staticcheck and a go mod tidy check (both modules)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags localstack ./local/emulator
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	@$(GO) mod tidy -diff || { echo "go mod tidy would change go.mod/go.sum (above)"; exit 1; }
	@cd infra && $(GO) mod tidy -diff || { echo "go mod tidy would change infra/go.mod/go.sum (above)"; exit 1; }

.PHONY: help local demo bench-billing test go-test lint

# Each area keeps its own rules next to its code.
include local/rules.mk
include local/usage.mk
-include infra/rules.mk

# infra-check runs the infrastructure tests and linters once infra/rules.mk provides them.
infra-check: $(if $(wildcard infra/rules.mk),infra-test cfn-lint,)
.PHONY: infra-check
