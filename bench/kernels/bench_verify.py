"""Micro-benchmark of ops.verify in sampling mode (K=4 drafts, temperature 0.8, top-k 50, top-p 0.9,
float32 draft probabilities): every backend present vs the eager reference (and torch.compile of it
on CUDA). Bytes = target logits + draft probabilities read once (an upper bound: rows after the
first rejection are not read).

Two eager baselines: ``eager`` is the float64 full-sort definition (``verify_reference``);
``torch_eager_fp32`` is a plain-torch float32 implementation of the same rule (``torch.topk`` +
top-p filter, dense target probabilities, residual ``max(0, p - q)``, ``torch.multinomial``), the
fairer speed baseline.

Run: ``pytest bench/kernels/bench_verify.py --benchmark-only`` (``FSGEN_BENCH_QUICK=1`` keeps only
B=16, V=151936 fp32 for a quick CPU check).
"""
import os

import pytest
import torch

from conftest import backends_to_bench, DEVICE, record_bandwidth, sync
from fsgen_engine.ops.sample import SamplingTensors
from fsgen_engine.ops.verify import verify
from fsgen_engine.reference.verify import verify_reference

QUICK = os.environ.get("FSGEN_BENCH_QUICK") == "1"
SHAPES = [(16, 151936)] if QUICK else [(b, v) for b in (1, 8, 64) for v in (32000, 151936)] + [(16, 151936)]
DTYPES = [torch.float32] if QUICK else [torch.bfloat16, torch.float32]
K = 4
FILTERS = dict(temperature=0.8, top_k=50, top_p=0.9, min_p=0.0)




def verify_eager_fp32(draft, logits, q, nd, temperature, top_k, top_p, min_p):
    """Float32 plain-torch speculative verification (temperature > 0 rows; min_p is 0 here)."""
    b, k1, v = logits.shape
    k = k1 - 1
    rep = lambda t: t.repeat_interleave(k1)  # noqa: E731
    z = logits.reshape(b * k1, v).float() / rep(temperature)[:, None]
    # Same filter as bench_sample.topk_topp_probs_fp32 (kept local: bench modules are not a package).
    k_eff = torch.where(rep(top_k) > 0, rep(top_k).clamp(max=v), torch.full_like(rep(top_k), v))
    kmax = int(k_eff.max())
    vals, idx = torch.topk(z, kmax, dim=-1) if kmax < v else torch.sort(z, dim=-1, descending=True)
    vals = vals.masked_fill(torch.arange(kmax, device=z.device)[None, :] >= k_eff[:, None], float("-inf"))
    probs = torch.softmax(vals, dim=-1)
    probs = probs.masked_fill((torch.cumsum(probs, dim=-1) - probs) >= rep(top_p)[:, None], 0.0)
    probs = probs / probs.sum(dim=-1, keepdim=True)
    p = torch.zeros(b * k1, v, device=z.device).scatter_(1, idx, probs).view(b, k1, v)

    u = torch.rand(b, k, device=z.device)
    p_x = p[:, :k].gather(2, draft[:, :, None])[:, :, 0]
    q_x = q.gather(2, draft[:, :, None])[:, :, 0]
    accept = (u * q_x < p_x) | (torch.arange(k, device=z.device)[None, :] >= nd[:, None])
    rejected = ~accept
    first_rej = torch.where(rejected.any(dim=1), rejected.int().argmax(dim=1), torch.full_like(nd, k))
    num_acc = torch.minimum(first_rej, nd)
    rows = torch.arange(b, device=z.device)
    p_at = p[rows, num_acc.clamp(max=k)]
    resid = (p_at - q[rows, num_acc.clamp(max=k - 1)]).clamp_min(0)
    resid = torch.where(resid.sum(dim=-1, keepdim=True) > 0, resid, p_at)
    dist = torch.where((num_acc >= nd)[:, None], p_at, resid)
    return num_acc, torch.multinomial(dist, 1)[:, 0]


def _fn(impl, draft, logits, q, nd, params):
    args = (draft, logits, q, nd, params.temperature, params.top_k, params.top_p, params.min_p)
    if impl == "eager":
        return lambda: verify_reference(*args)
    if impl == "torch_eager_fp32":
        return lambda: verify_eager_fp32(*args)
    if impl == "compile":
        compiled = torch.compile(verify_reference, dynamic=False)
        return lambda: compiled(*args)
    return lambda: verify(draft, logits, draft_probs=q, num_draft=nd, params=params, backend=impl, _validated=True)


@pytest.mark.parametrize("impl", backends_to_bench("verify", ("eager", "torch_eager_fp32")))
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
