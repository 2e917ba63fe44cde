"""Public kernel API of fsgen_engine.

Every op validates its inputs (the error names the argument, the value and the fix) and dispatches
to one backend: ``cuda`` (native ``_C``), ``triton`` (``fsgen_engine.kernels``), ``cpu`` (native
``_C``) or ``reference`` (plain torch; the definition). ``backend="auto"`` picks the fastest one
available for the tensors' device; ``backend=...`` or ``FSGEN_BACKEND`` force one
(see ``fsgen_engine.ops._dispatch``). Triton is imported only when a Triton kernel runs.

One op = one module ``ops/<name>.py``: it validates its arguments and hands them to its
``_dispatch.Op``, the registry of that op's backend implementations. Ops run on ``cpu`` and
``cuda`` tensors only (others, e.g. ``meta``, are refused before any kernel sees them).

Ops: token_stats, fuse_logits, sample, verify, store_kv, paged_attention. Compositions of them for
vocabulary-parallel logits (plain torch, the caller all-gathers): ``vocab_parallel``.
"""
# Bound eagerly: each op's module has the op's own name, and a lazily resolved attribute would be
# shadowed by the submodule as soon as anything imported the submodule first.
from fsgen_engine.ops.fuse_logits import fuse_logits
from fsgen_engine.ops.paged_attention import paged_attention
from fsgen_engine.ops.sample import SamplingTensors, sample
from fsgen_engine.ops.store_kv import store_kv
from fsgen_engine.ops.token_stats import TokenStats, token_stats
from fsgen_engine.ops.verify import verify
from fsgen_engine.ops.vocab_parallel import (argmax_partial, greedy_verify_sharded, merge_argmax, merge_token_stats,
                                             token_stats_partial)

__all__ = ["token_stats", "TokenStats", "fuse_logits", "sample", "SamplingTensors", "verify", "store_kv",
           "paged_attention", "token_stats_partial", "merge_token_stats", "argmax_partial", "merge_argmax",
           "greedy_verify_sharded"]
