"""Micro-benchmark of ops.verify in sampling mode (K=4 drafts, temperature 0.8, top-k 50, top-p 0.9,
float32 draft probabilities): every backend present vs the eager reference (and torch.compile of it
on CUDA). Bytes = target logits + draft probabilities read once (an upper bound: rows after the
first rejection are not read).

Run: ``pytest bench/kernels/bench_verify.py --benchmark-only`` (``FSGEN_BENCH_QUICK=1`` keeps only
B=16, V=151936 fp32 for a quick CPU check).
"""
import os

import pytest
import torch

from conftest import DEVICE, record_bandwidth, sync
from fsgen_engine.ops._dispatch import available_backends
from fsgen_engine.ops.sample import SamplingTensors
from fsgen_engine.ops.verify import verify
from fsgen_engine.reference.verify import verify_reference

QUICK = os.environ.get("FSGEN_BENCH_QUICK") == "1"
SHAPES = [(16, 151936)] if QUICK else [(b, v) for b in (1, 8, 64) for v in (32000, 151936)] + [(16, 151936)]
DTYPES = [torch.float32] if QUICK else [torch.bfloat16, torch.float32]
K = 4
FILTERS = dict(temperature=0.8, top_k=50, top_p=0.9, min_p=0.0)


def _impls():
    out = [b for b in available_backends(torch.device(DEVICE), native="verify", triton_kernel=True) if b != "reference"]
    if os.environ.get("FSGEN_BENCH_SKIP_TRITON") == "1":
        out = [b for b in out if b != "triton"]
    out.append("eager")
    if DEVICE == "cuda":
        out.append("compile")
    return out


def _fn(impl, draft, logits, q, nd, params):
    args = (draft, logits, q, nd, params.temperature, params.top_k, params.top_p, params.min_p)
    if impl == "eager":
        return lambda: verify_reference(*args)
    if impl == "compile":
        compiled = torch.compile(verify_reference, dynamic=False)
        return lambda: compiled(*args)
    return lambda: verify(draft, logits, draft_probs=q, num_draft=nd, params=params, backend=impl, _validated=True)


@pytest.mark.parametrize("impl", _impls())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,V", SHAPES)
def bench_verify(benchmark, impl, dtype, B, V):
    if DEVICE == "cpu" and B * V > 16 * 151936 and impl == "eager":
        pytest.skip("the float64 eager reference needs too much host memory/time at this size")
    logits = (torch.randn(B, K + 1, V, device=DEVICE) * 4).to(dtype)
    # Draft close to the target so several positions are verified per row.
    q = torch.softmax(logits[:, :K].float() / 0.8 + torch.randn(B, K, V, device=DEVICE) * 0.1, dim=-1)
    draft = logits[:, :K].float().argmax(-1)
    nd = torch.full((B,), K, dtype=torch.int64, device=DEVICE)
    params = SamplingTensors.prepare(B, DEVICE, **FILTERS)
    fn = _fn(impl, draft, logits, q, nd, params)
    fn()
    sync()

    def run():
        fn()
        sync()

    benchmark.extra_info.update(impl=impl, B=B, V=V, K=K, dtype=str(dtype).replace("torch.", ""), device=DEVICE)
    benchmark.pedantic(run, rounds=3 if DEVICE == "cpu" else 50, iterations=1, warmup_rounds=1)
    record_bandwidth(benchmark, logits.numel() * logits.element_size() + q.numel() * 4)
