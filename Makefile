.PHONY: install test test-fast quality style demo quickstart bench-quality bench-speed clean

VENV ?= .venv
PY := $(VENV)/bin/python
# Two workers on the 2-core reference machine; torch gets one thread per worker.
PYTEST_WORKERS ?= 2

install:
	@bash scripts/setup_venv.sh

# The README's test command: set-up + the whole offline test suite (slow tests included).
test: install
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(PY) -m pytest -n $(PYTEST_WORKERS) --timeout 900 -q tests

# Everything but the tests marked slow.
test-fast: install
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(PY) -m pytest -n $(PYTEST_WORKERS) -q -m "not slow" tests

quality: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

style: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The README's main command: the end-to-end pipeline on MovieLens-100K (report in runs/ml-100k/report/), from the
# packaged recipe adagrpo_trl/recipes/ml-100k/pipeline.yaml.
demo: install
	OMP_NUM_THREADS=2 $(VENV)/bin/adagrpo-trl pipeline --config ml-100k

# The quality benchmark on MovieLens-100K, 3 seeds (30 min on 2 cores; writes benchmarks/results/quality/ml-100k/lr1e-4/,
# the committed report; index of every result: benchmarks/README.md).
bench-quality: install
	OMP_NUM_THREADS=2 $(PY) benchmarks/quality.py --dataset ml-100k --seeds 0 1 2

quickstart: install
	HF_HUB_OFFLINE=1 $(PY) examples/quickstart.py

# The speed benchmark, quick mode (1-2 minutes on 2 cores): AdaGRPO over GRPO step time, trie-constrained over
# unconstrained beam search, trie build, evaluation throughput, scaling. Writes benchmarks/results/speed/speed_quick.json
# and speed_scaling_quick.png; `$(PY) benchmarks/speed.py` (no --quick) is the full run behind the committed
# benchmarks/results/speed/speed.json.
bench-speed: install
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(PY) benchmarks/speed.py --quick

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
