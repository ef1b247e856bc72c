#!/usr/bin/env bash
# Install everything the tests need into .venv-test, run ruff, build the documentation site
# (`mkdocs build --strict`: broken links, unresolved references and public names without a
# docstring fail it; then the headless-Chromium screenshot check, skipped with a message where
# Chromium is absent), then pytest twice:
#   1. the whole suite in file order, on the backends of PROBLOSS_TEST_BACKENDS
#      (default: numpy, array_api_strict, torch, jax, dask; TensorFlow for its own tests);
#   2. the whole suite again with NumPy as the only backend and in random order
#      (pytest-randomly), so that a test whose verdict depends on which backends
#      or tests ran before it fails here.
# Extra arguments go to both runs (e.g. `bash scripts/test.sh -k keras`).
# The second run prints its seed; PROBLOSS_TEST_SEED=<seed> replays that order.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-test
.venv-test/bin/python -m pip install -q -c constraints-test.txt -e ".[test,docs]"
# tf.keras 2.x, without its dependencies: it requires the full `tensorflow` wheel, and
# tensorflow-cpu (from the test extra) provides the same modules.
.venv-test/bin/python -m pip install -q --no-deps -c constraints-test.txt "tf_keras>=2.16"
# JAX's compiled CPU paths (XLA FFI handlers in the C extension) compile only where jaxlib's
# FFI header is found, and pip built the extension above in an isolated environment without
# JAX: build it again in this one, and fail if the handlers are still missing (their tests
# would otherwise skip).
.venv-test/bin/python -m pip install -q --no-build-isolation --no-deps -e .
.venv-test/bin/python -c "from probloss._backends import _jax_ffi; assert _jax_ffi.AVAILABLE, 'no XLA FFI handlers'"
.venv-test/bin/python -m ruff check src tests benchmarks
docs_tmp="$(mktemp -d)"
trap 'rm -rf "$docs_tmp"' EXIT
# No --quiet: with it, mkdocs does not count warnings and --strict passes anyway.
NO_MKDOCS_2_WARNING=1 .venv-test/bin/python -m mkdocs build --strict -d "$docs_tmp/site"
.venv-test/bin/python scripts/screenshot_docs.py --allow-missing --site "$docs_tmp/site" --out "$docs_tmp/screenshots"
# pytest exits 5 when it collects no test; set -e turns that into a failure.
.venv-test/bin/python -m pytest -n 2 -q "$@"
seed="${PROBLOSS_TEST_SEED:-$(( (RANDOM << 15) | RANDOM ))}"
echo "NumPy only, random order: PROBLOSS_TEST_SEED=$seed replays this order"
PROBLOSS_TEST_BACKENDS=numpy .venv-test/bin/python -m pytest -n 2 -q -p randomly --randomly-seed="$seed" "$@"
