"""Micro-benchmark of ops.token_stats: every backend present vs the torch eager reference (and
torch.compile of it on CUDA). Bytes moved = logits read + 4 float32 + 1 int64 outputs per row.

Run: ``pytest bench/kernels/bench_token_stats.py --benchmark-only`` (``FSGEN_BENCH_QUICK=1`` keeps
only B=16, V=151936 for a quick CPU check).
"""
import os

import pytest
import torch

from conftest import backends_to_bench, DEVICE, record_bandwidth, sync
from fsgen_engine.ops.token_stats import token_stats
from fsgen_engine.reference.token_stats import token_stats_reference

QUICK = os.environ.get("FSGEN_BENCH_QUICK") == "1"
SHAPES = [(16, 151936)] if QUICK else [(b, v) for b in (1, 8, 64) for v in (32000, 151936)] + [(16, 151936)]
DTYPES = [torch.float32] if QUICK else [torch.bfloat16, torch.float32]




_compiled = None


def _fn(impl, x):
    global _compiled
    if impl == "eager":
        return lambda: token_stats_reference(x)
    if impl == "compile":
        if _compiled is None:
            _compiled = torch.compile(token_stats_reference, dynamic=False)
        return lambda: _compiled(x)
    return lambda: token_stats(x, backend=impl)


@pytest.mark.parametrize("impl", backends_to_bench("token_stats"))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,V", SHAPES)
def bench_token_stats(benchmark, impl, dtype, B, V):
    x = (torch.randn(B, V, device=DEVICE) * 4).to(dtype)
    fn = _fn(impl, x)
    fn()
    sync()

    def run():
        fn()
        sync()

    benchmark.extra_info.update(impl=impl, B=B, V=V, dtype=str(dtype).replace("torch.", ""), device=DEVICE)
    benchmark.pedantic(run, rounds=10 if DEVICE == "cpu" else 50, warmup_rounds=1, iterations=1)
    record_bandwidth(benchmark, B * V * x.element_size() + B * (4 * 4 + 8))
