#!/usr/bin/env bash
# Run the test suite (sets everything up first). Extra arguments go to pytest.
# Triton kernels run under the interpreter on machines without a GPU (tests/conftest.py sets
# TRITON_INTERPRET=1 there).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
lint-imports --no-logo --no-cache   # the layer contract in pyproject.toml (docs/architecture.md)
exec python -m pytest -q -n "${FSGEN_TEST_WORKERS:-2}" --dist loadgroup -p no:cacheprovider "$@" tests
