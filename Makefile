# Short commands for set-up, the offline demo and the tests. Every target installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := results/demo

.PHONY: setup run test clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# The main job on the embedded offline default: a short FIVE training on scikit-learn's digits, then evaluation.
run: $(STAMP)
	$(BIN)/five train --model five --dataset digits --latent-dim 8 --epochs 30 --out $(DEMO)/five
	$(BIN)/five evaluate --run $(DEMO)/five --importance-samples 200 --out $(DEMO)/five/eval.json

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) results logs .pytest_cache
