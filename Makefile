# The two commands of the README: `make demo` and `make test`. Each creates .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch 2.13.0 is a CPU build on this machine's disk; any other version downloads a CUDA build.
TORCH ?= torch==2.13.0
# The Triton that torch 2.13's CUDA build pins; here its kernels run under its interpreter
# (`make test TRITON=` tests without it: those tests skip).
TRITON ?= triton==3.7.1

# The lowest versions pyproject.toml allows (keep in step with its dependencies).
LOWEST := .venv-lowest
LOWEST_PINS := "numpy==1.26.0" "numba==0.60.0" "array-api-compat==1.11.0"
# The tests that need nothing beyond NumPy, Numba and array-api-compat; the lowest
# versions run them but the slow sweeps (every test runs in the main environment).
NUMPY_SIDE_TESTS := tests/test_seed.py tests/test_numpy.py tests/test_errors.py \
	tests/test_kernels.py tests/test_numpy_optimizer.py tests/test_properties.py \
	tests/test_python_inputs.py tests/test_cli.py tests/test_options.py tests/test_fork.py

.PHONY: demo test lint typecheck docs pytest test-lowest bench clean

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

test: lint typecheck docs pytest test-lowest

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

# The pages under docs/ and the API reference from the docstrings, into build/site/;
# strict: a broken link or a stale name fails.
docs: $(VENV)/.test-installed
	$(BIN)/mkdocs build --quiet

# Two workers, each test file on one (its kernels compile once): 818 s against 1,343 s
# in one process, measured from a fresh clone on this 2-core machine.
XDIST := -n 2 --dist loadfile

pytest: $(VENV)/.test-installed
	$(BIN)/pytest $(XDIST) --durations=20

$(LOWEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --quiet $(LOWEST_PINS) pytest pytest-xdist hypothesis mpmath
	$(LOWEST)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

test-lowest: $(LOWEST)/.installed
	NUMBA_CACHE_DIR=$(LOWEST)/numba-cache $(LOWEST)/bin/python -m pytest -p no:cacheprovider $(XDIST) -m "not slow" $(NUMPY_SIDE_TESTS)

bench: $(VENV)/.test-installed
	$(BIN)/rmsprop bench
	$(BIN)/python benchmarks/bench_small.py

clean:
	rm -rf $(VENV) $(LOWEST) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
