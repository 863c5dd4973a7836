# nlpexp — `make help` lists the targets.
SHELL := /bin/bash
PY := .venv/bin/python
# torch goes in first so that nothing pulls a CUDA build; override for GPU machines.
TORCH ?= torch==2.13.0
PORT ?= 6006
ARGS ?=
SWEEP ?=
PRESETS ?=
# Test processes: each test file runs whole in one of them (--dist loadfile), the longest files first (tests/conftest.py
# LONGEST_FIRST; --no-loadscope-reorder keeps that order); one torch thread each.
TEST_WORKERS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
# The dataset mirror; run.py falls back to ../shared/data beside the checkout as well.
export NLPEXP_DATA_DIR ?= $(abspath ../shared/data)

.DEFAULT_GOAL := help
.PHONY: help install run test test-full test-integration bench sweep sweeps sweep-summary dashboard tensorboard lint clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

install: .venv/.installed ## create .venv and install nlpexp (torch CPU wheel first)

.venv/.installed: pyproject.toml constraints.txt
	test -d .venv || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]" -c constraints.txt
	touch $@

run: install ## the main job: SBERT-NLI on the bundled MiniLM (ARGS="..." adds overrides)
	$(PY) run.py $(ARGS)

test: install ## the test suite (tiny models, about 6 min on 2 cores; TEST_WORKERS=2 processes)
	$(PYTEST) -m "not slow and not integration" $(ARGS)

test-full: install ## every test, the slow ones too (not the integration ones)
	$(PYTEST) -m "not integration" $(ARGS)

test-integration: install ## tests on a real SLURM cluster (scripts/slurm_cluster.sh up; as root it is brought up)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m integration $(ARGS)

bench: install ## benchmarks on the real data; figures go to benchmarks/results/
	$(PY) benchmarks/run.py $(ARGS)

sweep: install ## an Optuna sweep (ARGS="hparams_search=... "); rerun the same command to resume it
	$(PY) run.py -m hparams_search=sbert_nli $(ARGS)

sweeps: install ## several sweep presets one after another (PRESETS="sbert_nli model_comparison", ARGS="...")
	@test -n "$(PRESETS)" || { echo 'error: PRESETS="<hparams_search preset> ..." is required'; exit 2; }
	status=0; for preset in $(PRESETS); do $(PY) run.py -m hparams_search=$$preset $(ARGS) || status=$$?; done; exit $$status

sweep-summary: install ## rebuild a sweep's summary from its storage (SWEEP=multirun/<study>, default: newest)
	$(PY) -m nlpexp.sweep summary $(SWEEP)

dashboard: install ## optuna-dashboard on a sweep's study (SWEEP=multirun/<study>, default: newest; PORT=6006)
	$(PY) -m nlpexp.sweep dashboard $(SWEEP) --port $(PORT)

tensorboard: install ## serve TensorBoard on outputs/ and multirun/ (PORT=6006)
	$(PY) -m nlpexp.tb serve --port $(PORT)

lint: install ## ruff
	$(PY) -m ruff check src tests benchmarks run.py

clean: ## remove run outputs and caches
	rm -rf outputs multirun .pytest_cache .ruff_cache .cache
