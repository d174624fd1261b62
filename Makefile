# One definition of every developer task; CI (.ci/run) calls `make check`, the README calls these too.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo check lint types test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Run the daemon on the embedded Factus emulator with the sample exports: copies config/samples
# into inbox/, processes them once, leaves PDFs, XMLs and reports in outbox/.
demo: install
	mkdir -p inbox
	cp config/samples/*.csv config/samples/*.xlsx config/samples/*.json config/samples/*.jsonl inbox/
	$(BIN)/factus-daemon run --emulator --once

check: install lint types test

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: install
	$(BIN)/mypy

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/bench_intake.py
	$(BIN)/python bench/bench_daemon.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache var
