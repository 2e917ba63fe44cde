"""Public kernel API of fsgen_engine.

Every op validates its inputs (the error names the argument, the value and the fix) and dispatches
to one backend: ``cuda`` (native ``_C``), ``triton`` (``fsgen_engine.kernels``), ``cpu`` (native
``_C``) or ``reference`` (plain torch; the definition). ``backend="auto"`` picks the fastest one
available for the tensors' device; ``backend=...`` or ``FSGEN_BACKEND`` force one
(see ``fsgen_engine.ops._dispatch``).

Ops: token_stats, fuse_logits, sample, verify, store_kv, paged_attention.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "token_stats": "fsgen_engine.ops.token_stats",
    "TokenStats": "fsgen_engine.ops.token_stats",
    "fuse_logits": "fsgen_engine.ops.fuse_logits",
    "sample": "fsgen_engine.ops.sample",
    "verify": "fsgen_engine.ops.verify",
    "store_kv": "fsgen_engine.ops.store_kv",
    "paged_attention": "fsgen_engine.ops.paged_attention",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    # Lazy: importing the package must not import triton or build anything.
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fsgen_engine.ops' has no attribute {name!r}")
