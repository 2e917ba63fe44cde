"""ops.sample: draw one token per row from temperature/top-k/top-p/min-p filtered logits.

Semantics (defined by ``fsgen_engine.reference.sample``): NaN logits are never sampled; a row with
no finite logit returns token 0; temperature 0 is the argmax (ties -> lowest index), per row; a row
with a ``+inf`` logit returns its first ``+inf`` whatever the temperature and filters (a ``+inf`` is
the only candidate); the filters apply after temperature in the order top-k, top-p, min-p and keep
ties at their boundary.
Tokens are drawn by the exponential race (no ``torch.multinomial``, no host sync): kernels derive
their noise from one int64 seed drawn with ``torch.randint(generator=...)`` on the logits' device,
so results are deterministic for a given generator state (per backend; backends use different
noise streams).

Hot path: build a :class:`SamplingTensors` once per generate call (validates, one host sync) and
pass it as ``params=``; ``sample`` then does no value checks and never syncs.
"""
from __future__ import annotations

import torch

from fsgen_engine.ops._dispatch import Op
from fsgen_engine.ops._native import call_native, dtype_code
from fsgen_engine.ops._sampling import SamplingTensors, check_logits, draw_seed
from fsgen_engine.ops._split import split_args

__all__ = ["sample", "SamplingTensors"]

OP = Op("sample", native=True, triton=True)


def sample(logits: torch.Tensor, *, temperature=1.0, top_k=0, top_p: float | torch.Tensor = 1.0,
           min_p: float | torch.Tensor = 0.0, generator: torch.Generator | None = None, backend: str = "auto",
           params: SamplingTensors | None = None) -> torch.Tensor:
    """Sample one token per row.

    logits: ``[B, V]`` float32/float16/bfloat16, stride 1 along V (rows may be strided).
    temperature (>= 0, 0 = greedy), top_k (>= 0, 0 = off), top_p (in (0, 1], 1 = off),
    min_p (in [0, 1], 0 = off): Python scalars or ``[B]`` tensors.
    params: a :class:`SamplingTensors` (hot path; the scalar arguments are then ignored).
    Returns ``[B]`` int64 tokens on the logits' device.
    """
    check_logits(OP.name, "logits", logits, 2)
    batch, device = logits.shape[0], logits.device
    params = SamplingTensors.resolve(OP.name, params, batch, device, temperature=temperature, top_k=top_k,
                                     top_p=top_p, min_p=min_p)
    which = OP.choose(device, backend)
    if batch == 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    return OP.run(which, logits, params, generator)


@OP.impl("reference")
def _reference(backend, logits, params, generator):
    from fsgen_engine.reference.sample import sample_reference

    return sample_reference(logits, params.temperature, params.top_k, params.top_p, params.min_p, generator)


@OP.impl("cpu", "cuda", "triton")
def _kernel(backend, logits, params, generator):
    seed = draw_seed(generator, logits.device)
    out = torch.empty(logits.shape[0], dtype=torch.int64, device=logits.device)
    if backend == "triton":
        from fsgen_engine.kernels.sample_split import sample_any_triton

        sample_any_triton(logits, params.temperature, params.top_k, params.top_p, params.min_p, seed, out)
    else:
        # CUDA: 512-thread blocks per pass of the split pipeline, at least 2048 columns per split.
        split, _ws = (split_args(OP.name, logits.device, logits.shape[0], logits.shape[1], min_cols=2048,
                                 blocks_per_sm=2) if backend == "cuda" else ({}, None))
        if backend == "cuda":
            split["all_greedy"] = params.all_greedy
        call_native(OP.name, backend, logits.device, logits=logits.data_ptr(), batch=logits.shape[0],
                    vocab=logits.shape[1], row_stride=logits.stride(0), dtype=dtype_code(logits),
                    temperature=params.temperature.data_ptr(), top_k=params.top_k.data_ptr(),
                    top_p=params.top_p.data_ptr(), min_p=params.min_p.data_ptr(), seed=seed.data_ptr(),
                    out=out.data_ptr(), **split)
    return out
