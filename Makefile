# Two commands for a new user: `make demo` runs the daily retraining demo, `make test` runs the tests.
# Both create (or reuse) .venv and install exactly the pinned versions from the constraints file.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := constraints/constraints-3.11.txt
STAMP := $(VENV)/.installed
# Reproducible installs: same versions on every machine (how Airflow itself ships constraints).
PIP_INSTALL := $(BIN)/python -m pip install --disable-pip-version-check -q -c $(CONSTRAINTS)

.PHONY: install demo demo-ui test test-unit test-integration lint format constraints clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing airflow-training-guard and its pinned dependencies into $(VENV) ..."
	$(PIP_INSTALL) -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The UI on http://127.0.0.1:$(PORT) only, LocalExecutor sized to the CPUs; Ctrl-C stops every service.
PORT ?= 8080
demo-ui: $(STAMP)
	$(BIN)/python scripts/demo.py --ui --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Regenerate the constraints file after changing dependencies in pyproject.toml.
constraints:
	rm -rf .venv-constraints && $(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install -q '.[dev]'
	.venv-constraints/bin/python -m pip freeze --exclude-editable | grep -v '^airflow-training-guard' > $(CONSTRAINTS)
	rm -rf .venv-constraints

clean:
	rm -rf $(VENV) .airflow .pytest_cache .mypy_cache .ruff_cache
