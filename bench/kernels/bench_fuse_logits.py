"""Micro-benchmark of ops.fuse_logits (contrastive preset: two inputs, mask): every backend present
vs the torch eager reference (and torch.compile of it on CUDA). Bytes moved = large read twice (the
max pass and the fused pass) + small read once + float32 output written.

Run: ``pytest bench/kernels/bench_fuse_logits.py --benchmark-only`` (``FSGEN_BENCH_QUICK=1`` keeps
only B=16, V=151936).
"""
import os

import pytest
import torch

from conftest import backends_to_bench, DEVICE, record_bandwidth, sync
from fsgen_engine.ops.fuse_logits import fuse_logits, resolve_weights
from fsgen_engine.reference.fuse_logits import fuse_logits_reference

QUICK = os.environ.get("FSGEN_BENCH_QUICK") == "1"
SHAPES = [(16, 151936)] if QUICK else [(b, v) for b in (1, 8, 64) for v in (32000, 151936)] + [(16, 151936)]
DTYPES = [torch.float32] if QUICK else [torch.bfloat16, torch.float32]
WEIGHTS = resolve_weights("contrastive")




_compiled = None


def _fn(impl, large, small):
    global _compiled
    if impl == "eager":
        return lambda: fuse_logits_reference(large, small, None, *WEIGHTS)
    if impl == "compile":
        if _compiled is None:
            _compiled = torch.compile(fuse_logits_reference, dynamic=False)
        return lambda: _compiled(large, small, None, *WEIGHTS)
    return lambda: fuse_logits(large, small, method="contrastive", backend=impl)


@pytest.mark.parametrize("impl", backends_to_bench("fuse_logits"))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,V", SHAPES)
def bench_fuse_logits(benchmark, impl, dtype, B, V):
    large = (torch.randn(B, V, device=DEVICE) * 3).to(dtype)
    small = (torch.randn(B, V, device=DEVICE) * 3).to(dtype)
    fn = _fn(impl, large, small)
    fn()
    sync()

    def run():
        fn()
        sync()

    benchmark.extra_info.update(impl=impl, B=B, V=V, dtype=str(dtype).replace("torch.", ""), device=DEVICE)
    benchmark.pedantic(run, rounds=10 if DEVICE == "cpu" else 50, warmup_rounds=1, iterations=1)
    record_bandwidth(benchmark, B * V * (3 * large.element_size() + 4))
