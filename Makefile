# Set-up and entry points; every target creates its own virtual environment.
PYTHON ?= python3
VENV ?= .venv
OUT ?= output/stevedore
BIN = $(VENV)/bin

.PHONY: setup run ui test lint bench clean

$(BIN)/.installed: pyproject.toml tests/fixtures/plugin_example/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet -e tests/fixtures/plugin_example
	touch $@

setup: $(BIN)/.installed

# Bootstrap setuptools, pbr and stevedore from source (pinned to the golden versions), as
# Dagster runs (discovery, then the wheel builds) on the SQLite instance in $(OUT)/dagster-home.
run: setup
	DAGSTER_HOME=$(abspath $(OUT))/dagster-home $(BIN)/fromager-dagster bootstrap \
		--collection stevedore -r collections/stevedore-requirements.txt \
		-c collections/stevedore-constraints.txt -O $(OUT)

# The Dagster UI and daemon on that instance (Ctrl-C stops them).
ui: setup
	DAGSTER_HOME=$(abspath $(OUT))/dagster-home $(BIN)/fromager-dagster ui -O $(OUT)

test: setup
	$(BIN)/python -m pytest -q -n 2

lint: setup
	$(BIN)/ruff check fromager_dagster tests
	$(BIN)/mypy fromager_dagster
	$(BIN)/lint-imports

bench: setup
	$(BIN)/python benchmarks/bootstrap_bench.py -r collections/stevedore-requirements.txt \
		-c collections/stevedore-constraints.txt

clean:
	rm -rf $(VENV) output bench-out
