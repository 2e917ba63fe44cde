"""ops.token_stats: per-row statistics of next-token logits in one pass over the vocabulary.

``token_stats(logits)`` with ``logits [B, V]`` (float32 / float16 / bfloat16, stride 1 along V, any
row stride, so ``x[:, -1, :]`` of a ``[B, T, V]`` tensor needs no copy) returns a :class:`TokenStats`
of ``[B]`` tensors: float32 ``entropy`` (nats), ``max_prob``, ``margin`` (top-1 minus top-2
probability, 0 on ties), ``logsumexp`` and int64 ``argmax`` (lowest index among equal maxima, as
``torch.argmax``). Kernels use an online softmax (running max, sum of exp, sum of exp*x, top-2).

Special rows, identical on every backend (see ``fsgen_engine.reference.token_stats``):

* NaN anywhere in the row: ``argmax`` = index of the first NaN (``torch.argmax`` does the same),
  ``entropy``/``max_prob``/``margin``/``logsumexp`` = NaN. ``argmax`` is always in ``[0, V)``.
* ``+inf`` (no NaN): ``argmax`` = first ``+inf``, ``logsumexp`` = ``+inf``, other stats NaN.
* all ``-inf``: ``argmax`` = 0, ``logsumexp`` = ``-inf``, other stats NaN.
* ``-inf`` entries in a row with a finite maximum are zero-probability tokens.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from fsgen_engine.ops._dispatch import Op
from fsgen_engine.ops._native import call_native, dtype_code
from fsgen_engine.ops._split import split_args
from fsgen_engine.ops._validate import FLOAT_DTYPES, check_last_dim_contiguous, check_nonempty, check_tensor

OP = Op("token_stats", native=True, triton=True)


class TokenStats(NamedTuple):
    entropy: torch.Tensor    # [B] float32, nats
    max_prob: torch.Tensor   # [B] float32
    margin: torch.Tensor     # [B] float32, p(top1) - p(top2)
    argmax: torch.Tensor     # [B] int64
    logsumexp: torch.Tensor  # [B] float32


def token_stats(logits: torch.Tensor, *, backend: str = "auto") -> TokenStats:
    """Entropy, max prob, margin, argmax and logsumexp of each row of ``logits [B, V]``.

    ``backend``: ``auto`` | ``cuda`` | ``triton`` | ``cpu`` | ``reference`` (see ``fsgen_engine.ops``).
    """
    check_tensor(OP.name, "logits", logits, ndim=2, dtypes=FLOAT_DTYPES)
    check_nonempty(OP.name, "logits", logits, 1)
    check_last_dim_contiguous(OP.name, "logits", logits)
    return OP(logits.device, backend, logits)


@OP.impl("reference")
def _reference(backend, logits):
    from fsgen_engine.reference.token_stats import token_stats_reference

    return TokenStats(*token_stats_reference(logits))


@OP.impl("cpu", "cuda", "triton")
def _kernel(backend, logits):
    B, V = logits.shape
    # One float32 [4, B] buffer + one int64 [B]: two allocations, no other torch op around the kernel.
    out = torch.empty((4, B), dtype=torch.float32, device=logits.device)
    arg = torch.empty((B,), dtype=torch.int64, device=logits.device)
    if B > 0 and backend == "triton":
        from fsgen_engine.kernels.token_stats import token_stats_triton

        token_stats_triton(logits, out, arg)
    elif B > 0:
        # CUDA: 256-thread blocks folding 4 columns per thread per step: at least 1024 columns per split.
        split, _ws = (split_args(OP.name, logits.device, B, V, min_cols=1024, blocks_per_sm=4) if backend == "cuda"
                      else ({}, None))
        call_native(OP.name, backend, logits.device, logits=logits.data_ptr(), batch=B, vocab=V,
                    row_stride=logits.stride(0) if B > 1 else V, dtype=dtype_code(logits), out_stats=out.data_ptr(),
                    out_argmax=arg.data_ptr(), **split)
    return TokenStats(out[0], out[1], out[2], arg, out[3])
