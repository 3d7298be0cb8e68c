# sirem: the two set-up commands are `make demo` and `make test`; both create .venv first.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned in the same pip command: otherwise pip may swap in a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
DEMO_DIR ?= demo_out
BENCH_DIR ?= bench_out
export OMP_WAIT_POLICY ?= PASSIVE
export HF_HUB_OFFLINE ?= 1

.PHONY: setup test demo figures bench ablation study lint clean gpu-setup gpu-check weights

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' '$(TORCH)'
	touch $@

# CUDA extra (cufinufft), for machines with an NVIDIA GPU and CUDA 12 runtime libraries
# (CUDA 13: build cufinufft from source, docs/gpu.md).
gpu-setup: setup
	$(BIN)/pip install --quiet -e '.[gpu]' '$(TORCH)'

# On a GPU machine: the CUDA tests, the NUFFT and model benchmarks on CUDA, then the rest of the
# suite (docs/gpu.md). Logs go to $(BENCH_DIR)/gpu.
gpu-check: gpu-setup
	PYTHON=$(BIN)/python bash bench/gpu_check.sh $(BENCH_DIR)/gpu

test: setup
	$(BIN)/python -m pytest -q -n 2 --durations=15

demo: setup
	SIREM=$(BIN)/sirem bash examples/demo.sh $(DEMO_DIR)

# The README's figures (docs/figures: figure2.jpg, figure3.png and their .labels.json), redrawn
# with the current code from $(DEMO_DIR) (run make demo first); a test compares their labels
# with the code's.
figures: setup
	SIREM=$(BIN)/sirem bash examples/figures.sh $(DEMO_DIR) docs/figures

# The LPIPS/FID weight files into the torch hub cache (SHA-256 checked), for offline evaluation.
weights: setup
	$(BIN)/sirem weights fetch

# BART 0.8 (Debian package) is the reference the baselines are timed against.
bench: setup
	command -v bart >/dev/null || (apt-get update -qq && apt-get install -y -qq bart) || \
	  echo "bart could not be installed: the baseline benchmark runs sirem alone"
	$(BIN)/python bench/run_all.py --out $(BENCH_DIR)

# Issue 5's science: SIREM with and without audio against its MRI branch and full gridding, on
# held-out synthetic speakers with and without per-speaker anatomy (about 40 min on 2 cores).
ablation: setup
	$(BIN)/python bench/ablation.py --out $(BENCH_DIR)/ablation

# Issue 14's science: the speech prior against temporal TV, its no-audio ablation (each tuned
# and at shared solve weights), the x_bar prior and the paper's model, on 16 held-out synthetic
# speakers at 2 arms per frame (docs/study.md; about 1.5 h on 2 cores). More cases: STUDY_ARGS="--spread 1 0.5 0 --arms 2 13".
study: setup
	$(BIN)/python bench/study.py --out $(BENCH_DIR)/study $(STUDY_ARGS)

lint: setup
	$(BIN)/ruff check sirem_cli tests bench
	$(BIN)/ruff format --check sirem_cli tests bench

clean:
	rm -rf $(DEMO_DIR) $(BENCH_DIR) .pytest_cache .ruff_cache
