# wmbench: `make test` and `make evaluate` work on a fresh clone (they create .venv first).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODEL  ?= polygrad
ENV    ?= halfcheetah
PYTEST_ARGS ?=
BENCH_MODE ?= full
BENCH_JSON ?= reports/bench/benchmarks.json

.PHONY: install test lint bench evaluate report gpu-check clean-cache

# torch is pinned in the same pip command as the project: a local CPU build, not the CUDA stack.
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0 -e '.[test]'
	touch $@

install: $(BIN)/.installed

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# the import contract of pyproject.toml: a module imports only those on the floors below it
lint: install
	$(BIN)/lint-imports

# pytest-benchmark suite (generation, training step, oracle); BENCH_MODE=short is CI's one-round h = 10 pass.
bench: install
	mkdir -p $(dir $(BENCH_JSON))
	WMBENCH_BENCH_MODE=$(BENCH_MODE) $(BIN)/python -m pytest benchmarks --benchmark-only -p no:cacheprovider \
		--benchmark-json=$(BENCH_JSON) --benchmark-columns=median,iqr,rounds $(PYTEST_ARGS)

evaluate: install
	$(BIN)/wmbench evaluate --model $(MODEL) --env $(ENV)

# Redraws the committed reference report (reports/) from its results (reports/reference/).
# Your own results: `wmbench report` draws the workspace's results/ into report/.
report: install
	$(BIN)/wmbench report --results reports/reference --out reports

# One GPU machine, minutes, no network needed: the gpu tests, paper-size generation and training (fp32, bf16,
# compiled), a short PolyGRAD evaluation; one summary table. PYTHON must hold torch with CUDA.
gpu-check:
	$(PYTHON) benchmarks/gpu_check.py

clean-cache:
	rm -rf models/cache
