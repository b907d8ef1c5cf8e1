# Short commands for set-up, the offline demo and the tests. Every target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run evidence test lint bench clean clean-results

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# The main job on the embedded offline default: the quick sweep (digits + synthetic manifold) through
# Snakemake: training, evaluation, MLflow, tables and plots under results/five-quick/.
run: $(STAMP)
	$(BIN)/snakemake --cores all --configfile config/quick.yaml

# One pytest worker per core (pytest-xdist; a test file's tests stay on one worker: the Slurm tests share a cluster;
# files in the order tests/conftest.py collects them, the longest first),
# each with one PyTorch thread so that the workers do not fight over the cores.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

# The code's shape: ruff (lint, format), the import layers (pyproject.toml's import-linter contracts), and the
# rule files (snakefmt, snakemake --lint). CI runs it before the tests.
lint: $(STAMP)
	$(BIN)/ruff check five tests benchmarks workflow
	$(BIN)/ruff format --check five tests benchmarks workflow/scripts
	$(BIN)/lint-imports
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint --configfile config/config.yaml

# Speed and overhead figures as ratios (see benchmarks/README.md); --quick for a shorter run.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# The offline evidence sweep (64 min on 2 CPU cores, measured 2026-11-30): the paper's claims on digits and the
# manifold, see results/five-evidence/claims.md; the recorded answer is docs/evidence-claims.md.
evidence: $(STAMP)
	$(BIN)/snakemake --cores all --configfile config/evidence.yaml

# Removes the environment and logs; results/ (checkpoints, tables, the MLflow database) stays.
clean:
	rm -rf $(VENV) logs .pytest_cache

# Removes every result: all checkpoints, tables and the MLflow database. Asks first.
clean-results:
	@printf 'This deletes results/ (every checkpoint, table and the MLflow database). Type yes: '; \
	read answer; [ "$$answer" = yes ] && rm -rf results && echo "removed results/" || echo "kept results/"
