# wmbench: `make test` and `make evaluate` work on a fresh clone (they create .venv first).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODEL  ?= polygrad
ENV    ?= halfcheetah
PYTEST_ARGS ?=
TEST_WORKERS ?= auto
BENCH_MODE ?= full
BENCH_JSON ?= reports/bench/benchmarks.json

.PHONY: install test lint bench evaluate report gpu-check gpu-study clean-cache data-size-study entropy-study \
	reference-study recording-study

# torch is pinned in the same pip command as the project: a local CPU build, not the CUDA stack.
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0 -e '.[test]'
	touch $@

install: $(BIN)/.installed

# one pytest-xdist worker per core, each on one torch thread (tests/conftest.py); a test file stays on one worker,
# so its module fixtures are made once. TEST_WORKERS=0 runs everything in this process.
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# the import contract of pyproject.toml (a module imports only those on the floors below it), then ruff's checks
lint: install
	$(BIN)/lint-imports
	$(BIN)/ruff check wmbench tests benchmarks docs

# pytest-benchmark suite (generation, training step, oracle); BENCH_MODE=short is CI's one-round h = 10 pass.
bench: install
	mkdir -p $(dir $(BENCH_JSON))
	WMBENCH_BENCH_MODE=$(BENCH_MODE) $(BIN)/python -m pytest benchmarks --benchmark-only -p no:cacheprovider \
		--benchmark-json=$(BENCH_JSON) --benchmark-columns=median,iqr,rounds $(PYTEST_ARGS)

evaluate: install
	$(BIN)/wmbench evaluate --model $(MODEL) --env $(ENV)

# Redraws every committed report from its store: the reference (reports/ from reports/reference/, with the other
# recordings of its datasets: the earlier 3-seed reference, the only one with HalfCheetah at h = 50, and the recording
# study's stores), the learning curves, the RL runs and the two studies (a few minutes). Your own results: `wmbench
# report` draws results/ into report/.
RECORDING_STORES = reports/reference-v2/results $(sort $(wildcard reports/recordings/*-seed*))
# the recordings whose stores hold the data-size study's subsets too (make recording-study: add one once they are in)
DATA_SIZE_RECORDINGS = $(addprefix reports/recordings/hopper-seed,1 2 3 4) $(addprefix reports/recordings/walker2d-seed,1 2)
report: install
	$(BIN)/wmbench report --results reports/reference --out reports $(addprefix --other-recording ,$(RECORDING_STORES))
	$(BIN)/wmbench report --results reports/reference-v2/results --out reports/reference-v2
	for store in curves curves-gpu rl; do $(BIN)/wmbench report --results reports/$$store --out reports/$$store/report; done
	$(BIN)/wmbench report --results reports/curves-gpu-long/results --out reports/curves-gpu-long/report
	$(BIN)/wmbench report --against data.train_transitions --results $(DATA_SIZE_STORE) --out reports/data-size \
		$(addprefix --other-recording ,$(DATA_SIZE_RECORDINGS))
	$(BIN)/wmbench report --against policy_std --results $(ENTROPY_STORE) --out reports/entropy

# The data-size study (issue 28; hours on a CPU, one core per worker: rerun to resume). Models learn from about
# 5k, 20k and all (0) of the SAC replay buffers' training transitions, every size on this workspace's datasets (the
# reference cells are not copied in: a remade dataset keeps its id, and a report refuses to mix two recordings).
# Needs `wmbench data make ENV --policy sac`.
STUDY_MODELS ?= polygrad,ar-diffusion-2row,ar-diffusion,mlp-ensemble,linear,persistence
STUDY_WORKERS ?= 1
DATA_SIZE_STORE := reports/data-size/results
data-size-study: install
	WMBENCH_RESULTS=$(DATA_SIZE_STORE) $(BIN)/wmbench sweep --models $(STUDY_MODELS) --envs hopper,halfcheetah,walker2d \
		--policy behaviour --seeds 0,1,2,3,4 --grid data.train_transitions=5000,20000,0 --workers $(STUDY_WORKERS)
	$(BIN)/wmbench report --against data.train_transitions --results $(DATA_SIZE_STORE) --out reports/data-size

# The reference store (issue 26): every model at h = 10, seeds 0-4, the three envs' SAC replay buffers, made here
# first at one thread (hours on a CPU, one core per worker: rerun to resume). The cells of the six data-size
# models are the data-size study's full-size cells on every env (same config hash, equal number for number).
REFERENCE_STORE := reports/reference
REFERENCE_MODELS := persistence,linear,mlp-ensemble,ar-diffusion,ar-diffusion-2row,transformer,polygrad
reference-study: install
	for env in halfcheetah hopper walker2d; do $(BIN)/wmbench data list | grep -q "wmbench/$$env/sac-replay-v0" || \
		OMP_NUM_THREADS=1 $(BIN)/wmbench data make $$env --policy sac; done
	WMBENCH_RESULTS=$(REFERENCE_STORE) $(BIN)/wmbench sweep --models $(REFERENCE_MODELS) --envs halfcheetah,hopper,walker2d \
		--horizons 10 --seeds 0,1,2,3,4 --policy behaviour --policy-std 0.2 --workers $(STUDY_WORKERS)

# Other recordings of the SAC datasets (the recording as the unit of replication): for each env of RECORDING_ENVS and
# SAC seed of RECORDING_SEEDS, the env's data recorded at one thread in its own workspace (recordings/ENV-seedS:
# datasets and models, not committed), then every model on it with all the data, seeds 0-2, then the data-size
# study's subsets (its models: not the transformer), into reports/recordings/ENV-seedS (hours on a CPU: rerun to
# resume). `make report` counts every such store with the reference's recording and the earlier one; the data-size
# report those of DATA_SIZE_RECORDINGS.
RECORDING_ENVS ?= hopper
RECORDING_SEEDS ?= 1 2 3 4
RECORDING_MODELS := persistence,linear,polygrad,ar-diffusion-2row,ar-diffusion,mlp-ensemble
RECORDING_SWEEP := --horizons 10 --seeds 0,1,2 --policy behaviour --policy-std 0.2 --workers 1
recording-study: install
	for env in $(RECORDING_ENVS); do for s in $(RECORDING_SEEDS); do \
		export WMBENCH_HOME=recordings/$$env-seed$$s WMBENCH_RESULTS=reports/recordings/$$env-seed$$s OMP_NUM_THREADS=1; \
		$(BIN)/wmbench data list | grep -q "wmbench/$$env/sac-replay-v0" || \
			$(BIN)/wmbench data make $$env --policy sac --seed $$s || exit 1; \
		$(BIN)/wmbench sweep --models $(RECORDING_MODELS),transformer --envs $$env $(RECORDING_SWEEP) || exit 1; \
		$(BIN)/wmbench sweep --models $(RECORDING_MODELS) --envs $$env $(RECORDING_SWEEP) \
			--grid data.train_transitions=5000,20000,0 || exit 1; done; done

# The policy-entropy axis: PolyGRAD and the authors' autoregressive diffusion at behaviour stds 0.05-0.4.
ENTROPY_STORE := reports/entropy/results
entropy-study: install
	WMBENCH_RESULTS=$(ENTROPY_STORE) $(BIN)/wmbench sweep --models polygrad,ar-diffusion-2row --envs hopper,halfcheetah,walker2d \
		--policy behaviour --policy-std 0.05,0.1,0.2,0.4 --seeds 0,1,2,3,4 --workers $(STUDY_WORKERS)
	$(BIN)/wmbench report --against policy_std --results $(ENTROPY_STORE) --out reports/entropy

# One GPU machine, minutes, no network needed: the gpu tests, paper-size generation and training (fp32, bf16,
# compiled), a short PolyGRAD evaluation; one summary table. PYTHON must hold torch with CUDA.
gpu-check:
	$(PYTHON) benchmarks/gpu_check.py

# The paper's central comparison on one GPU lease: checks, the seed-batching and TF32 targets, then PolyGRAD
# against the authors' two-row baseline (3 seeds as one network each) for as many updates as the lease allows.
gpu-study:
	$(PYTHON) benchmarks/gpu_study.py

clean-cache:
	rm -rf models/cache
