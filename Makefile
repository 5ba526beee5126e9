# Two commands do everything: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mlobs demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/ruff check otel_mlobs tests benchmarks
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check otel_mlobs tests benchmarks
	$(BIN)/ruff format --check otel_mlobs tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/summarize.py
	$(BIN)/python benchmarks/sdk_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
