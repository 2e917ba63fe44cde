"""Micro-benchmark of ops.sample (temperature 0.8, top-k 50, top-p 0.9): every backend present vs
the eager reference (and torch.compile of it on CUDA). Bytes = logits read once + int64 tokens
(the kernels re-read rows from cache for the threshold passes; GB/s is against one read).

Run: ``pytest bench/kernels/bench_sample.py --benchmark-only`` (``FSGEN_BENCH_QUICK=1`` keeps only
B=16, V=151936 fp32 for a quick CPU check).
"""
import os

import pytest
import torch

from conftest import DEVICE, record_bandwidth, sync
from fsgen_engine.ops._dispatch import available_backends
from fsgen_engine.ops.sample import SamplingTensors, sample
from fsgen_engine.reference.sample import sample_reference

QUICK = os.environ.get("FSGEN_BENCH_QUICK") == "1"
SHAPES = [(16, 151936)] if QUICK else [(b, v) for b in (1, 8, 64) for v in (32000, 151936)] + [(16, 151936)]
DTYPES = [torch.float32] if QUICK else [torch.bfloat16, torch.float32]
FILTERS = dict(temperature=0.8, top_k=50, top_p=0.9, min_p=0.0)


def _impls():
    out = [b for b in available_backends(torch.device(DEVICE), native="sample", triton_kernel=True) if b != "reference"]
    if os.environ.get("FSGEN_BENCH_SKIP_TRITON") == "1":
        out = [b for b in out if b != "triton"]
    out.append("eager")
    if DEVICE == "cuda":
        out.append("compile")
    return out


def _fn(impl, x, params):
    args = (x, params.temperature, params.top_k, params.top_p, params.min_p)
    if impl == "eager":
        return lambda: sample_reference(*args)
    if impl == "compile":
        compiled = torch.compile(sample_reference, dynamic=False)
        return lambda: compiled(*args)
    return lambda: sample(x, params=params, backend=impl)


@pytest.mark.parametrize("impl", _impls())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,V", SHAPES)
def bench_sample(benchmark, impl, dtype, B, V):
    x = (torch.randn(B, V, device=DEVICE) * 4).to(dtype)
    params = SamplingTensors.prepare(B, DEVICE, **FILTERS)
    fn = _fn(impl, x, params)
    fn()
    sync()

    def run():
        fn()
        sync()

    benchmark.extra_info.update(impl=impl, B=B, V=V, dtype=str(dtype).replace("torch.", ""), device=DEVICE)
    benchmark.pedantic(run, rounds=5 if DEVICE == "cpu" else 50, iterations=1, warmup_rounds=1)
    record_bandwidth(benchmark, x.numel() * x.element_size() + B * 8)
