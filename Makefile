# The two commands: `make run` and `make test`. Both create .venv on demand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
SEEDS ?= 300
SEED_START ?= 0
# pytest-xdist workers for `make test` (0: one serial process). Most tests
# wait on processes, sockets and timers, so 3 fill 2 cores; tests/conftest.py
# says how test files share them.
PYTEST_WORKERS ?= 3
PYTEST_ARGS ?=

.PHONY: run test lint types imports pytest bench sim clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

run: $(STAMP)
	$(BIN)/python -m meshd.demo

test: $(TEST_STAMP) lint types imports pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(TEST_STAMP)
	$(BIN)/mypy raft registry connect meshd tools

# The import contracts in pyproject.toml ([tool.importlinter]).
imports: $(TEST_STAMP)
	$(BIN)/lint-imports --no-cache --no-logo

pytest: $(TEST_STAMP)
	$(BIN)/python -m pytest -q --durations=25 -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

sim: $(TEST_STAMP)
	$(BIN)/python -m tests.sim.run --seeds $(SEEDS) --seed-start $(SEED_START)

bench: $(TEST_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
