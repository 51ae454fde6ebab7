# Local AWS emulators without containers: DynamoDB Local and moto, installed
# into the git-ignored cache on first use. Used by the Go package local/emulator
# (tests install on demand too). See docs/local-emulators.md.

EMULATORS_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
EMULATORS_CACHE ?= $(if $(CMS_CACHE_DIR),$(CMS_CACHE_DIR),$(EMULATORS_ROOT)/.cache)

.PHONY: emulators emulators-clean

emulators: ## install DynamoDB Local and moto into .cache (first use only)
	CMS_CACHE_DIR="$(EMULATORS_CACHE)" bash "$(EMULATORS_ROOT)/local/scripts/install-emulators.sh"

emulators-clean: ## remove the emulator cache
	rm -rf "$(EMULATORS_CACHE)/dynamodb-local" "$(EMULATORS_CACHE)/moto-venv" \
		"$(EMULATORS_CACHE)/moto-install.log" "$(EMULATORS_CACHE)/.emulators.lock" "$(EMULATORS_CACHE)/.emulators.lock.d"
