# make demo: fresh clone to result. make test: the test suite. make dev: the Dagster UI on the demo.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The stamp changes with pyproject.toml, so a changed dependency list reinstalls.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install demo test dev lint bench

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: install
	$(BIN)/python -m dagster_project.demo

test: install
	$(BIN)/python -m pytest

# The UI on the demo's instance, with the code location on the demo's days: the demo writes its first
# day to demo_start_date, given here as FAULTLINE_START_DATE (unless the environment sets one).
# `dg dev` (package dagster-dg-cli) supersedes `dagster dev` in Dagster 1.13 and runs the same
# services; `dagster dev` stays the fallback while dagster-dg-cli is not installed.
DATA := $(or $(FAULTLINE_DATA_DIR),$(CURDIR)/data)
dev: install
	mkdir -p $(DATA)/dagster_home
	DAGSTER_HOME=$(DATA)/dagster_home \
	FAULTLINE_START_DATE=$${FAULTLINE_START_DATE:-$$(cat $(DATA)/demo_start_date 2>/dev/null)} \
	$$(test -x $(BIN)/dg && echo $(BIN)/dg || echo $(BIN)/dagster) dev -w workspace.yaml

lint: install
	$(BIN)/ruff check .

# Benchmarks, not part of `make test`: each writes bench/results/<name>.json and prints a table.
# bench/durations.py and bench/scale.py need the PostgreSQL at 127.0.0.1:5432 (scale.py: --stores sqlite
# without it); the accuracy data is an argument.
BENCH_DATA ?= ../shared/data/loghub
bench: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python bench/accuracy.py --data $(BENCH_DATA)
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/durations.py
