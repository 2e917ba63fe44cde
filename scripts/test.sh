#!/usr/bin/env bash
# Run the test suite (sets everything up first). Extra arguments go to pytest; without any path among
# them the whole of tests/ runs.
#   bash scripts/test.sh                    # everything, pinned environment (.venv)
#   bash scripts/test.sh --triton-floor     # the Triton tests (tests/ops -k triton, tests/toolchain -k triton)
#                                           # in the lower-bound environment (.venv-triton36, constraints.txt)
# Triton kernels run under the interpreter on machines without a GPU (tests/conftest.py sets
# TRITON_INTERPRET=1 there).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
select=(tests)
if [ "${1:-}" = "--triton-floor" ]; then
  shift
  export FSGEN_TRITON_FLOOR=1
  select=(-k triton tests/ops tests/toolchain)
fi
for arg in "$@"; do
  case "$arg" in tests|tests/*|./tests*) select=() ;; esac
done
# shellcheck disable=SC1091
. "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
python -c "import triton, numpy, torch; print(f'[test] {torch.__version__=} {triton.__version__=} {numpy.__version__=}')"
# the layer contract in pyproject.toml (docs/architecture.md): an upward import fails the run
[ -n "${FSGEN_TRITON_FLOOR:-}" ] || lint-imports --no-logo --no-cache
exec python -m pytest -q -n "${FSGEN_TEST_WORKERS:-2}" --dist loadgroup -p no:cacheprovider "$@" "${select[@]}"
