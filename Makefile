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
BENCH_STAMP = $(VENV)/.installed-bench-$(HASH)

# pipefail: the pip install's output goes through a filter, its failure must not be lost
COMMA := ,
SHELL       := bash
.SHELLFLAGS := -o pipefail -c

.PHONY: install install-run run test unit lint typecheck bench schemas docs clean

# The install uses uv when it can (parallel downloads: about 10 s instead of a minute of pip on a
# fresh clone): the one on PATH, or one fetched once into $(VENV)/tools. Without it, plain pip.
# Either way it prints what it does; the full pip log stays in $(VENV)/pip.log.
define pip_install
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	@if ! command -v uv >/dev/null && [ ! -x $(VENV)/tools/bin/uv ]; then \
		echo "==> fetching uv (a fast installer) into $(VENV)/tools"; \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target $(VENV)/tools uv \
			|| echo "    (no uv: installing with pip, slower)"; \
	fi
	@uv=$$(command -v uv || echo $(VENV)/tools/bin/uv); \
	if [ -x "$$uv" ]; then \
		test -x $(BIN)/python || { echo "==> creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv --without-pip $(VENV); }; \
		echo "==> installing $(2) into $(VENV) (once; later runs skip this)"; \
		"$$uv" pip install --python $(BIN)/python -e '.[$(1)]'; \
	else \
		test -x $(BIN)/pip || { echo "==> creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }; \
		echo "==> installing $(2) into $(VENV) with pip (once; later runs skip this)"; \
		$(BIN)/python -m pip install --progress-bar off --disable-pip-version-check -e '.[$(1)]' \
			2>&1 | tee $(VENV)/pip.log | grep --line-buffered -E '^(Collecting|Successfully)' | sed -u 's/^/    /'; \
	fi
endef

$(RUN_STAMP): pyproject.toml
	$(call pip_install,dev,the runtime and the dev services)
	@rm -f $(VENV)/.installed-run-* && touch $@

$(TEST_STAMP): pyproject.toml
	$(call pip_install,test,the runtime and the test tools)
	@rm -f $(VENV)/.installed-* && touch $@ $(RUN_STAMP)

$(BENCH_STAMP): $(TEST_STAMP)
	$(call pip_install,test$(COMMA)bench,the bench tools (the naive worker's SQLModel, py-spy))
	@touch $@

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

## End to end on real Kafka + Postgres: create, mix, naive baseline, latency series, due burst
## (BENCH_ARGS="--quick" for small sizes, "--only mix --profile bench/results" for py-spy)
bench: $(BENCH_STAMP)
	$(BIN)/python bench/throughput.py $(BENCH_ARGS)

## Rewrite the generated parts of the README and docs/ (state diagram, message examples)
docs: install-run
	$(BIN)/python -m campaign_worker.entrypoints.cli docs --write README.md docs/rules.md docs/contract.md
