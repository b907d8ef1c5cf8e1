# Short commands for set-up, the offline demo and the tests. Every target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# The main job on the embedded offline default: the quick sweep (digits + synthetic manifold) through
# Snakemake: training, evaluation, MLflow, tables and plots under results/.
run: $(STAMP)
	$(BIN)/snakemake --cores all --configfile config/quick.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Speed and overhead figures as ratios (see benchmarks/README.md); --quick for a shorter run.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) results logs .pytest_cache
