"""Micro-benchmark of ops.sample (temperature 0.8, top-k 50, top-p 0.9): every backend present vs
the eager reference (and torch.compile of it on CUDA). Bytes = logits read once + int64 tokens
(the kernels re-read rows from cache for the threshold passes; GB/s is against one read).

Two eager baselines: ``eager`` is the float64 full-sort definition (``sample_reference``);
``torch_eager_fp32`` is what a plain-torch engine would run (float32 softmax, ``torch.topk`` then
top-p on the top-k survivors, ``torch.multinomial``; one host sync for the largest k), the fairer
speed baseline.

Run: ``pytest bench/kernels/bench_sample.py --benchmark-only`` (``FSGEN_BENCH_QUICK=1`` keeps only
B=16, V=151936 fp32 for a quick CPU check).
"""
import os

import pytest
import torch

from conftest import backends_to_bench, DEVICE, record_bandwidth, sync
from fsgen_engine.ops.sample import SamplingTensors, sample
from fsgen_engine.reference.sample import sample_reference

QUICK = os.environ.get("FSGEN_BENCH_QUICK") == "1"
SHAPES = [(16, 151936)] if QUICK else [(b, v) for b in (1, 8, 64) for v in (32000, 151936)] + [(16, 151936)]
DTYPES = [torch.float32] if QUICK else [torch.bfloat16, torch.float32]
FILTERS = dict(temperature=0.8, top_k=50, top_p=0.9, min_p=0.0)




def topk_topp_probs_fp32(z: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor):
    """Plain-torch float32 filter of ``z [N, V]`` (already divided by the temperature): returns
    (probs ``[N, k]`` renormalised after top-k then top-p, token ids ``[N, k]``). ``top_k == 0`` rows
    use the whole (sorted) row. One host sync for the largest k."""
    v = z.shape[-1]
    k_eff = torch.where(top_k > 0, top_k.clamp(max=v), torch.full_like(top_k, v))
    kmax = int(k_eff.max())
    vals, idx = torch.topk(z, kmax, dim=-1) if kmax < v else torch.sort(z, dim=-1, descending=True)
    vals = vals.masked_fill(torch.arange(kmax, device=z.device)[None, :] >= k_eff[:, None], float("-inf"))
    probs = torch.softmax(vals, dim=-1)
    # top-p: drop a token once the mass before it already reaches top_p (the first token always stays).
    drop = (torch.cumsum(probs, dim=-1) - probs) >= top_p[:, None]
    probs = probs.masked_fill(drop, 0.0)
    return probs / probs.sum(dim=-1, keepdim=True), idx


def sample_eager_fp32(x, temperature, top_k, top_p, min_p):
    """The float32 plain-torch baseline (temperature > 0 rows; min_p is 0 in this benchmark)."""
    probs, idx = topk_topp_probs_fp32(x.float() / temperature[:, None], top_k, top_p)
    return idx.gather(1, torch.multinomial(probs, 1))[:, 0]


def _fn(impl, x, params):
    args = (x, params.temperature, params.top_k, params.top_p, params.min_p)
    if impl == "eager":
        return lambda: sample_reference(*args)
    if impl == "torch_eager_fp32":
        return lambda: sample_eager_fp32(*args)
    if impl == "compile":
        compiled = torch.compile(sample_reference, dynamic=False)
        return lambda: compiled(*args)
    return lambda: sample(x, params=params, backend=impl)


@pytest.mark.parametrize("impl", backends_to_bench("sample", ("eager", "torch_eager_fp32")))
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
