# Set-up and entry points; every target creates its own virtual environment.
PYTHON ?= python3
VENV ?= .venv
OUT ?= output/stevedore
BIN = $(VENV)/bin

.PHONY: setup run test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/.installed

# Bootstrap setuptools, pbr and stevedore from source (pinned to the golden versions).
run: setup
	$(BIN)/fromager-dagster bootstrap -r collections/stevedore-requirements.txt \
		-c collections/stevedore-constraints.txt -O $(OUT)

test: setup
	$(BIN)/python -m pytest -q -n 2

lint: setup
	$(BIN)/ruff check fromager_dagster tests
	$(BIN)/mypy fromager_dagster/core
	$(BIN)/lint-imports

bench: setup
	$(BIN)/python benchmarks/bootstrap_bench.py -r collections/stevedore-requirements.txt \
		-c collections/stevedore-constraints.txt

clean:
	rm -rf $(VENV) output bench-out
