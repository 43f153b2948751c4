# The README's two commands: `make run` and `make test`. Both build .venv from scratch if missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch 2.14.1 + torchvision 0.29.1 is the pair that works on the reference machines (docs/install.md).
TORCH  := "torch>=2.4" "torchvision>=0.19"

.PHONY: run toy test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH) -e .
	touch $@

# what `make run` needs: the image plugin's libraries and matplotlib for the plot
$(VENV)/.run: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH) -e ".[image,report]"
	touch $@ $(VENV)/.core

# every extra, the text demo's MiniLM weights included: every README command works after it;
# [mlflow] in a second step: torchattacks' requests pin and mlflow's do not resolve together
$(VENV)/.all: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH) -e ".[all,text-demo,test]"
	$(BIN)/pip install -q -e ".[mlflow]"
	touch $@ $(VENV)/.run $(VENV)/.core

FIRST_RUN := runs/first-run

# SGD vs SAM vs AT on scikit-learn's digits, one seed: a sweep of three runs, one after another on
# one torch thread (re-running skips finished ones; progress on stderr), then its table and the
# clean-vs-robust plot. A few CPU-minutes.
run: $(VENV)/.run
	OMP_NUM_THREADS=1 $(BIN)/samat sweep recipes/digits/first_run.yaml --output $(FIRST_RUN) > /dev/null
	$(BIN)/samat report $(FIRST_RUN) --out $(FIRST_RUN)/report
	@echo "clean vs robust plot: $$(ls $(FIRST_RUN)/report/tradeoff_*.png)"
	@echo "the exact-theory section 4 model (SGD vs SAM vs AT with W_R, seconds): make toy"

# ST vs SAM vs AT on the section 4 model: a sweep of three runs, then its table with the learned
# robust-feature weight W_R (the exact theory: samat run recipes/quickstart.yaml)
toy: $(VENV)/.core
	$(BIN)/samat sweep recipes/quickstart.yaml --output runs/quickstart > /dev/null
	$(BIN)/samat report runs/quickstart --extra w_r

# The Slurm tests (tests/test_sweep_slurm.py) need a Slurm: if none answers, scripts/slurm_up.sh
# brings up a single-node one on 127.0.0.1 (installing slurm-wlm and munge with apt-get when root)
# and scripts/slurm_down.sh stops it after pytest, whatever pytest's outcome. If it cannot start,
# make test goes on and those tests skip, saying why. zsh, for the zsh completion test, is
# installed the same way (scripts/install_zsh.sh).
test: $(VENV)/.all
	$(BIN)/ruff check .
	@scripts/install_zsh.sh
	@if timeout 10 sinfo -h >/dev/null 2>&1; then \
	  echo "make test: Slurm answers already; left as it is"; \
	elif scripts/slurm_up.sh; then \
	  trap 'scripts/slurm_down.sh' EXIT; trap 'exit 130' INT TERM; \
	else \
	  echo "make test: no Slurm (see above): the Slurm tests will skip"; \
	fi; \
	$(BIN)/python -m pytest -q

lint: $(VENV)/.all
	$(BIN)/ruff check .

bench: $(VENV)/.all
	$(BIN)/python benchmarks/step_cost.py --json runs/bench/step_cost.json
	$(BIN)/python benchmarks/eval_overhead.py --json runs/bench/eval_overhead.json

clean:
	rm -rf $(VENV)
