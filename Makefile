# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# torch is installed first from its pinned CPU wheel, so nothing pulls a CUDA build.
$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP_RUN) $@

demo: $(STAMP_RUN)
	$(BIN)/python examples/migrate_demo.py

test: $(STAMP_DEV)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n 2 --dist worksteal tests

lint: $(STAMP_DEV)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy

# Every benchmark and bench/results/<date>/summary.md; e.g. `make bench BENCH_ARGS=--quick` for a short run.
bench: $(STAMP_DEV)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info
