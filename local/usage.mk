# Usage tools (docs/usage.md, docs/performance.md), included by the top Makefile.

.PHONY: bench-usage bench-usage-cpu dlq

# DynamoDB Local runs with the JVM's full JIT here (the emulator's default flags favour start-up).
bench-usage: ## push >= 1,000,000 usage records through SQS into DynamoDB Local: records/s, write units, exact totals (ARGS="-records N")
	CMS_DYNAMODB_JAVA_OPTS="$${CMS_DYNAMODB_JAVA_OPTS:--XX:+UseParallelGC -Xms1g}" $(GO) run ./local/benchusage $(ARGS)

bench-usage-cpu: ## CPU per usage record of our own code (decode, validate, resolve, aggregate; store faked out)
	$(GO) test -run '^$$' -bench 'Ingest' -benchtime 3s ./shared/usagecatalog ./shared/usage

dlq: ## list or replay the usage dead letters of a running `make local` (ARGS="list" or ARGS="replay [-id ID]")
	$(GO) run ./local/dlq $(if $(ARGS),$(ARGS),list)
