# Two commands on a fresh machine: `make up` and `make test`.
# Only python3 (3.11+) and make are assumed; uv is bootstrapped into .tools/ when missing.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
RUN := $(UV) run --frozen

.PHONY: up test test-unit test-integration soak lint typecheck bench sync clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $@

sync: $(VENV)/.synced

up: sync  ## the whole stack on embedded PostgreSQL and NATS
	$(RUN) agentboard up

test: sync lint typecheck  ## every test: unit, integration (real PostgreSQL and NATS), e2e
	$(RUN) pytest -q

test-unit: sync
	$(RUN) pytest -q tests/unit

test-integration: sync
	$(RUN) pytest -q tests/integration

soak: sync  ## the stress-sized runs (marker soak) that make test leaves out
	$(RUN) pytest -q -m soak

lint: sync
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: sync
	$(RUN) mypy

bench: sync  ## prints figures and ratios against baselines measured in the same run
	$(RUN) python -m bench

clean:
	rm -rf $(VENV) $(TOOLS) .agentboard .pytest_cache .mypy_cache .ruff_cache
