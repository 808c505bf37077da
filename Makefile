# The two commands: `make run` (the pipeline, locally) and `make test` (lint + the suite).
# Both create .venv and install pinned requirements on first use.
.PHONY: run test lint format migrate bench

run:
	@scripts/bootstrap.sh runtime
	@.venv/bin/python scripts/run_local.py

test:
	@scripts/bootstrap.sh dev
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .
	@.venv/bin/python -m pytest $(PYTEST_ARGS)

# Everything below is optional tooling, not needed to run or test.
lint:
	@scripts/bootstrap.sh dev
	@.venv/bin/ruff check . && .venv/bin/ruff format --check .

format:
	@scripts/bootstrap.sh dev
	@.venv/bin/ruff check --fix . && .venv/bin/ruff format .

bench:
	@scripts/bootstrap.sh dev
	@for b in benchmarks/bench_*.py; do PYTHONPATH=plugins:. .venv/bin/python $$b || exit 1; done
