"""paged_attention: the kernels (triton on GPU, C++ on CPU) vs the reference (page gather + fused
attention) and vs torch's
dense SDPA over the same K/V laid out contiguously (``sdpa_dense``: what attention costs without
pages), decode (q_len 1) and verification (q_len K+1 = 5), batch 1..64, context 512..8192 (reduced
set on CPU); plus decode with a sliding window (only the window's keys are read).
extra_info: bytes of K/V + q + out moved per call and the achieved GB/s."""
import os

import pytest
import torch

from conftest import DEVICE, record_bandwidth, sync
from fsgen_engine.ops import paged_attention

H, HKV, D, PAGE = 32, 8, 128, 16
if DEVICE == "cuda":
    BATCHES, CONTEXTS, BACKENDS, DTYPE = [1, 8, 64], [512, 2048, 8192], ["triton", "reference", "sdpa_dense"], \
        torch.float16
else:
    from fsgen_engine.ops._dispatch import available_backends

    native = [b for b in available_backends(torch.device("cpu"), native="paged_attention", triton_kernel=False)
              if b == "cpu"]
    BATCHES, CONTEXTS, BACKENDS, DTYPE = [1, 8], [512, 2048], native + ["reference", "sdpa_dense"], torch.float32
if os.environ.get("FSGEN_BENCH_SKIP_TRITON") == "1":
    BACKENDS = [b for b in BACKENDS if b != "triton"]


def _inputs(batch, ctx, q_len):
    pages_per_seq = -(-ctx // PAGE)
    P = batch * pages_per_seq
    k_cache = torch.randn(P, PAGE, HKV, D, dtype=DTYPE, device=DEVICE)
    v_cache = torch.randn_like(k_cache)
    page_table = torch.randperm(P, device=DEVICE).to(torch.int32).view(batch, pages_per_seq)
    seq_lens = torch.full((batch,), ctx, dtype=torch.int32, device=DEVICE)
    cu = torch.arange(batch + 1, dtype=torch.int32, device=DEVICE) * q_len
    q = torch.randn(batch * q_len, H, D, dtype=DTYPE, device=DEVICE)
    return q, k_cache, v_cache, page_table, seq_lens, cu


def _dense_sdpa(q, k_cache, v_cache, page_table, batch, ctx, q_len):
    """The same K/V gathered once (outside the timing) into ``[B, Hkv, ctx, D]``; returns the timed call."""
    k = k_cache[page_table.long()].reshape(batch, -1, HKV, D)[:, :ctx].transpose(1, 2).contiguous()
    v = v_cache[page_table.long()].reshape(batch, -1, HKV, D)[:, :ctx].transpose(1, 2).contiguous()
    qd = q.view(batch, q_len, H, D).transpose(1, 2).contiguous()
    # bottom-right causal mask: query i (position ctx - q_len + i) sees keys <= its position
    mask = None
    if q_len > 1:
        pos = torch.arange(ctx, device=q.device)
        mask = pos[None, :] <= (ctx - q_len + torch.arange(q_len, device=q.device))[:, None]
    return lambda: torch.nn.functional.scaled_dot_product_attention(qd, k, v, attn_mask=mask, scale=D ** -0.5,
                                                                    enable_gqa=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("q_len", [1, 5], ids=["decode", "verify_k4"])
@pytest.mark.parametrize("ctx", CONTEXTS)
@pytest.mark.parametrize("batch", BATCHES)
def bench_paged_attention(benchmark, batch, ctx, q_len, backend):
    if backend == "reference" and batch * ctx > 64 * 2048 and DEVICE == "cuda":
        pytest.skip("reference gather too large")
    q, kc, vc, pt, sl, cu = _inputs(batch, ctx, q_len)
    if backend == "sdpa_dense":
        call = _dense_sdpa(q, kc, vc, pt, batch, ctx, q_len)
    else:
        def call():
            paged_attention(q, kc, vc, pt, sl, cu, scale=D ** -0.5, max_q_len=q_len, max_seq_len=ctx,
                            backend=backend)

    def run():
        call()
        sync()

    run()
    benchmark(run)
    elt = q.element_size()
    nbytes = 2 * batch * ctx * HKV * D * elt + 2 * q.numel() * elt + pt.numel() * 4
    benchmark.extra_info.update(batch=batch, context=ctx, q_len=q_len, backend=backend, dtype=str(DTYPE))
    record_bandwidth(benchmark, nbytes)


WINDOW = 1024


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "sdpa_dense"])
@pytest.mark.parametrize("batch", BATCHES)
def bench_paged_attention_window(benchmark, batch, backend):
    """Decode at the longest context with a sliding window of 1024 keys: the Triton kernel skips the
    tiles below the window, so its time should follow the window, not the context."""
    ctx = CONTEXTS[-1]
    q, kc, vc, pt, sl, cu = _inputs(batch, ctx, 1)

    def run():
        paged_attention(q, kc, vc, pt, sl, cu, scale=D ** -0.5, max_q_len=1, max_seq_len=ctx, window=WINDOW,
                        backend=backend)
        sync()

    run()
    benchmark(run)
    elt = q.element_size()
    nbytes = 2 * batch * min(ctx, WINDOW) * HKV * D * elt + 2 * q.numel() * elt + pt.numel() * 4
    benchmark.extra_info.update(batch=batch, context=ctx, window=WINDOW, q_len=1, backend=backend, dtype=str(DTYPE))
    record_bandwidth(benchmark, nbytes)
