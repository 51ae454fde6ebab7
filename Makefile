# Channel billing platform. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
export GOFLAGS ?= -mod=mod

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN{FS=":.*## "}{printf "  %-18s %s\n",$$1,$$2}'

# Each area keeps its own rules next to its code.
-include local/rules.mk infra/rules.mk
