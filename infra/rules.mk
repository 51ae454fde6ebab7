# Infrastructure rules, included by the top Makefile (run from the repository root).
# Tools install themselves into the git-ignored .cache/ on first use, pinned:
#   aws-cdk (npm)                 .cache/aws-cdk-<version>/   only for cdk-bootstrap and deploy
#   cfn-lint + aws-sam-cli (PyPI) .cache/cfn-tools-<versions>/ one virtualenv (sam pins a cfn-lint range)
# The CDK app itself is Go (infra/, its own module) and synthesizes offline without the CDK CLI.

CDK_CLI_VERSION  ?= 2.1148.1
CFN_LINT_VERSION ?= 1.58.0
SAM_CLI_VERSION  ?= 1.170.0
PYTHON           ?= python3

# jsii (the CDK's Go-to-Node.js bridge) supports Node.js 22 and 24 and prints a large banner on
# Node.js 20, which is end-of-life; the pinned versions work on it. Upgrade Node.js to drop this.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION ?= 20
# jsii's Go runtime waits twice for its Node.js child (a goroutine and jsii.Close) and, when the
# goroutine loses, prints this (without a newline); harmless, dropped from the synth output.
JSII_WAIT_NOISE := Runtime process exited abnormally: waitid: no child processes

FUNCTIONS    := $(sort $(notdir $(patsubst %/,%,$(wildcard functions/*/))))
INFRA_OUT    := infra/cdk.out
CACHE        := .cache
CDK          := $(CACHE)/aws-cdk-$(CDK_CLI_VERSION)/node_modules/.bin/cdk
CFN_TOOLS    := $(CACHE)/cfn-tools-sam$(SAM_CLI_VERSION)-lint$(CFN_LINT_VERSION)
CFN_LINT     := $(CFN_TOOLS)/bin/cfn-lint
SAM          := $(CFN_TOOLS)/bin/sam
LAMBDA_BUILD := GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags='-s -w'

build: $(addprefix build-fn-,$(FUNCTIONS)) ## build every function: dist/<name>/bootstrap (linux/arm64, lambda.norpc, stripped)
	@echo "» build: $(words $(FUNCTIONS)) functions in dist/"

build-fn-%:
	@echo "» build $* (linux/arm64)"
	@$(LAMBDA_BUILD) -o dist/$*/bootstrap ./functions/$*

# `sam build` (BuildMethod: makefile) runs build-<LogicalId> with ARTIFACTS_DIR set; the logical
# ids are <Name>Function (template.yaml), the function is functions/<name>.
build-%Function:
	@fn=$$(echo '$*' | tr '[:upper:]' '[:lower:]'); \
	  echo "» sam build $$fn (linux/arm64) -> $(ARTIFACTS_DIR)"; \
	  $(LAMBDA_BUILD) -o "$(ARTIFACTS_DIR)/bootstrap" ./functions/$$fn

synth: build ## synthesize the CDK app (Go, offline, no CDK CLI) into infra/cdk.out
	@echo "» synth: go run ./infra (CDK app) -> $(INFRA_OUT)"
	@rm -rf $(INFRA_OUT)
	@set -o pipefail; start=$$(date +%s); cd infra && \
	  CDK_OUTDIR=cdk.out $(GO) run . 2>&1 | sed '/^$(JSII_WAIT_NOISE)$$/d' && \
	  echo "» synth: done in $$(( $$(date +%s) - start ))s: $$(ls cdk.out/*.template.json | sed 's|^|infra/|')"

$(CDK):
	@command -v npm >/dev/null || { echo "npm (Node.js) is needed for the CDK CLI"; exit 1; }
	@echo "» installing aws-cdk $(CDK_CLI_VERSION) (npm) into $(CACHE)/ (first use)"
	@start=$$(date +%s); npm install --prefix $(CACHE)/aws-cdk-$(CDK_CLI_VERSION) --no-audit --no-fund --loglevel=error aws-cdk@$(CDK_CLI_VERSION) && \
	  echo "» aws-cdk installed in $$(( $$(date +%s) - start ))s"

cdk-bootstrap: $(CDK) ## cdk bootstrap the current AWS account and region (once per account and region)
	$(CDK) bootstrap

deploy: synth $(CDK) ## deploy the synthesized stack to the current AWS account and region (CDK CLI)
	$(CDK) deploy --app $(INFRA_OUT) --require-approval broadening --outputs-file infra/cdk-outputs.json

bootstrap-admin: ## create the first platform admin in the deployed stack (CMS_ADMIN_EMAIL, CMS_ADMIN_PASSWORD; aws CLI v2)
	@command -v aws >/dev/null || { echo "the aws CLI (v2) is needed"; exit 1; }
	@test -n "$$CMS_ADMIN_EMAIL" && test -n "$$CMS_ADMIN_PASSWORD" || { echo "set CMS_ADMIN_EMAIL and CMS_ADMIN_PASSWORD"; exit 1; }
	@fn=$$($(PYTHON) -c 'import json,sys; o=json.load(open("infra/cdk-outputs.json")); print(next(iter(o.values()))["BootstrapFunctionName"])') && \
	  payload=$$($(PYTHON) -c 'import json,os; print(json.dumps({"email": os.environ["CMS_ADMIN_EMAIL"], "password": os.environ["CMS_ADMIN_PASSWORD"]}))') && \
	  echo "» invoking $$fn" && \
	  aws lambda invoke --function-name "$$fn" --cli-binary-format raw-in-base64-out --payload "$$payload" /dev/stdout

sync-usage-keys: ## converge every API key of the deployed stack with the channel (after a first deployment over an existing table; aws CLI v2)
	@command -v aws >/dev/null || { echo "the aws CLI (v2) is needed"; exit 1; }
	@fn=$$($(PYTHON) -c 'import json,sys; o=json.load(open("infra/cdk-outputs.json")); print(next(iter(o.values()))["UsageKeysFunctionName"])') && \
	  echo "» invoking $$fn {\"action\":\"sync\"}" && \
	  aws lambda invoke --function-name "$$fn" --cli-binary-format raw-in-base64-out --cli-read-timeout 900 --payload '{"action":"sync"}' /dev/stdout

$(CFN_TOOLS)/.installed:
	@echo "» installing cfn-lint $(CFN_LINT_VERSION) and aws-sam-cli $(SAM_CLI_VERSION) (PyPI) into $(CFN_TOOLS) (first use)"
	@start=$$(date +%s); rm -rf $(CFN_TOOLS) && $(PYTHON) -m venv $(CFN_TOOLS) && \
	  $(CFN_TOOLS)/bin/pip install --quiet --disable-pip-version-check cfn-lint==$(CFN_LINT_VERSION) aws-sam-cli==$(SAM_CLI_VERSION) && \
	  touch $@ && echo "» cfn-lint and aws-sam-cli installed in $$(( $$(date +%s) - start ))s"

# W3005 (a DependsOn that a GetAtt already implies) is how CDK wires a function to its role and
# the role's policy; it is harmless and ignored on the synthesized template only.
cfn-lint: synth $(CFN_TOOLS)/.installed ## cfn-lint the synthesized template and template.yaml, sam validate --lint template.yaml (offline)
	@echo "» cfn-lint $(INFRA_OUT)/*.template.json"
	@$(CFN_LINT) --ignore-checks W3005 -- $(INFRA_OUT)/*.template.json
	@echo "» cfn-lint template.yaml"
	@$(CFN_LINT) -- template.yaml
	@echo "» sam validate --lint template.yaml"
	@SAM_CLI_TELEMETRY=0 $(SAM) validate --lint --template template.yaml

infra-test: ## the infrastructure tests (cd infra && go test ./...)
	cd infra && $(GO) test -count=1 ./...

.PHONY: build synth cdk-bootstrap deploy bootstrap-admin sync-usage-keys cfn-lint infra-test
