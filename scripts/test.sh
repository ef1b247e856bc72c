#!/usr/bin/env bash
# Install everything the tests need into .venv-test and run the whole suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k keras`).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-test
.venv-test/bin/python -m pip install -q -c constraints-test.txt -e ".[test]"
.venv-test/bin/python -m ruff check src tests benchmarks
# pytest exits 5 when it collects no test; set -e turns that into a failure.
.venv-test/bin/python -m pytest -n 2 -q "$@"
