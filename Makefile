# The two commands of the README: `make demo` and `make test`. Each creates .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch 2.13.0 is a CPU build on this machine's disk; any other version downloads a CUDA build.
TORCH ?= torch==2.13.0
# The Triton that torch 2.13's CUDA build pins; here its kernels run under its interpreter
# (`make test TRITON=` tests without it: those tests skip).
TRITON ?= triton==3.7.1

.PHONY: demo test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[demo]"
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,torch,jax,demo]" $(if $(TRITON),"$(TRITON)")
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(BIN)/rmsprop demo

test: lint typecheck pytest

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

pytest: $(VENV)/.test-installed
	$(BIN)/pytest

bench: $(VENV)/.test-installed
	$(BIN)/rmsprop bench
	$(BIN)/python benchmarks/bench_small.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
