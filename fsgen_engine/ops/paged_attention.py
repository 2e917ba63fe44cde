"""ops.paged_attention: attention of a ragged batch of new queries over paged K/V.

One op for decode (1 query per sequence), verification (K+1) and catch-up extend / prefill (any
number), mixed in one batch. Backends: ``triton`` (kernels/paged_attention.py, CUDA), ``cpu``
(csrc/cpu/paged_attention.cpp: pages read in place, the CPU default), ``reference`` (plain torch:
gather, then fused attention), and ``flash`` (flash-attn's paged kernels,
only when ``import flash_attn`` works; never chosen by ``auto``). ``window`` gives Mistral / Qwen2
sliding-window attention with HF transformers' convention (see the reference module).
"""
from __future__ import annotations

import functools
import numbers
import os

import torch

from fsgen_engine.ops._dispatch import Op
from fsgen_engine.ops._native import call_native, dtype_code
from fsgen_engine.ops._validate import FLOAT_DTYPES, check_last_dim_contiguous, check_tensor
from fsgen_engine.reference.paged_attention import paged_attention_padded

OP = Op("paged_attention", native=True, triton=True)
NAME = OP.name
HEAD_DIMS = (64, 80, 96, 128)


@functools.lru_cache(maxsize=None)
def flash_available() -> bool:
    try:
        import flash_attn  # noqa: F401
    except Exception:
        return False
    return True


def _validate(q, k_cache, v_cache, page_table, seq_lens, cu_q_lens, scale, window) -> None:
    check_tensor(NAME, "q", q, ndim=3, dtypes=FLOAT_DTYPES)
    device = q.device
    check_tensor(NAME, "k_cache", k_cache, ndim=4, dtypes=(q.dtype,), device=device)
    check_tensor(NAME, "v_cache", v_cache, ndim=4, dtypes=(q.dtype,), device=device)
    for name, t, nd in (("page_table", page_table, 2), ("seq_lens", seq_lens, 1), ("cu_q_lens", cu_q_lens, 1)):
        check_tensor(NAME, name, t, ndim=nd, dtypes=(torch.int32,), device=device)
    N, H, D = q.shape
    P, S, Hkv, Dk = k_cache.shape
    if v_cache.shape != k_cache.shape:
        raise ValueError(f"{NAME}: v_cache has shape {tuple(v_cache.shape)} but k_cache has {tuple(k_cache.shape)}")
    if Dk != D:
        raise ValueError(f"{NAME}: q has head_dim {D} but k_cache has {Dk}; they must match")
    if Hkv == 0 or H % Hkv:
        raise ValueError(f"{NAME}: q has {H} heads, not a multiple of the {Hkv} KV heads of k_cache "
                         f"(grouped-query attention needs H % Hkv == 0)")
    if P == 0 or S == 0:
        raise ValueError(f"{NAME}: k_cache has shape {tuple(k_cache.shape)}: a cache of P pages of S slots needs "
                         f"P >= 1 and S >= 1")
    B = seq_lens.shape[0]
    if page_table.shape[0] != B:
        raise ValueError(f"{NAME}: page_table has {page_table.shape[0]} rows but seq_lens has {B} sequences")
    if cu_q_lens.shape[0] != B + 1:
        raise ValueError(f"{NAME}: cu_q_lens has {cu_q_lens.shape[0]} entries; it needs B+1={B + 1} (prefix sums)")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not scale > 0:
        raise ValueError(f"{NAME}: scale={scale!r} must be a positive float (usually head_dim ** -0.5)")
    if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 0:
        raise ValueError(f"{NAME}: window={window!r} must be a non-negative int: 0 for full attention, or the "
                         f"sliding-window size W > 0 (e.g. config.sliding_window or 0)")
    for name, t in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        check_last_dim_contiguous(NAME, name, t)
    if page_table.numel() and page_table.stride(1) != 1:
        raise ValueError(f"{NAME}: page_table must be contiguous along its last dim; pass page_table.contiguous()")


def paged_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, page_table: torch.Tensor,
                    seq_lens: torch.Tensor, cu_q_lens: torch.Tensor, *, scale: float, causal: bool = True,
                    window: int = 0, max_q_len: int | None = None, max_seq_len: int | None = None,
                    backend: str = "auto") -> torch.Tensor:
    """Attention of ``N`` new queries of ``B`` sequences over their paged keys/values.

    Args:
        q: ``[N, H, D]`` float32/float16/bfloat16; rows ``cu_q_lens[b]:cu_q_lens[b+1]`` belong to sequence b.
        k_cache, v_cache: ``[P, S, Hkv, D]``, same dtype as ``q`` (the new tokens' K/V already stored,
            see ``ops.store_kv``). ``H % Hkv == 0``. The Triton kernel takes ``D`` in 64, 80, 96, 128;
            other head dims run on the reference backend (``auto`` falls back to it).
        page_table: ``[B, max_pages]`` int32 page ids of each sequence in order.
        seq_lens: ``[B]`` int32 KV length of each sequence including its new tokens.
        cu_q_lens: ``[B+1]`` int32 prefix sums of the new tokens per sequence.
        scale: softmax scale. causal: query ``j`` (position ``seq_lens[b] - q_len_b + j``) sees keys
            at positions ``<=`` its own; otherwise all ``seq_lens[b]`` keys.
        window: int ``>= 0``; 0 is full attention. ``W > 0`` is a sliding window: a query at position ``i``
            also needs ``i - j < W`` to see key ``j``, i.e. itself and the ``W - 1`` keys before it (HF's
            ``sliding_window``). The Triton kernel skips key tiles wholly outside the window.
        max_q_len, max_seq_len: host ints bounding the per-sequence query count and KV length (size the
            grid without a device sync); computed with ``.item()`` when None.
        backend: ``auto`` | ``triton`` | ``cpu`` | ``reference`` | ``flash``.
    Returns: ``[N, H, D]`` in ``q.dtype`` (softmax math in float32).

    Bad values of ``cu_q_lens``, ``seq_lens`` or ``page_table`` never read or write outside the tensors:
    ``cpu`` checks them on the host before the kernel reads anything (ValueError naming the entry;
    ``O(B + pages)`` in C++, no torch op, so it stays on in the hot path); ``reference`` raises from its
    torch indexing; ``triton`` checks them on the device, because a host check would cost a sync per
    call: query rows outside ``q`` are skipped, and keys past the page-table row or on a page id outside
    ``[0, P)`` are read from page 0 (memory-safe, but that sequence's output is meaningless); ``flash``
    trusts its inputs. Debug flag: ``FSGEN_CHECK_BOUNDS=1`` runs the ``cpu`` backend's checks on the
    host for every backend (one sync per call) and raises the same errors.
    """
    _validate(q, k_cache, v_cache, page_table, seq_lens, cu_q_lens, scale, window)
    scale, window = float(scale), int(window)
    if backend == "flash":
        if not flash_available():
            raise ValueError(f"{NAME}: backend='flash' needs flash-attn (pip install flash-attn); it is not importable here")
        if not q.is_cuda:
            raise ValueError(f"{NAME}: backend='flash' needs CUDA tensors; move the inputs with .cuda()")
        which = "flash"
    else:
        which = OP.choose(q.device, backend)
    if which == "triton" and q.shape[-1] not in HEAD_DIMS:
        if backend == "triton":
            raise ValueError(f"{NAME}: head_dim={q.shape[-1]} is not supported by the Triton kernel (supported: "
                             f"{HEAD_DIMS}); use backend='reference' or 'auto'")
        which = "reference"
    if which != "cpu" and os.environ.get("FSGEN_CHECK_BOUNDS", "0") == "1":
        check_bounds_on_host(page_table, seq_lens, cu_q_lens, q.shape[0], k_cache.shape[0], k_cache.shape[1])
    if which != "flash":  # flash-attn sizes its own launch
        if max_q_len is None:
            max_q_len = int((cu_q_lens[1:] - cu_q_lens[:-1]).max().item()) if seq_lens.numel() else 0
        if max_seq_len is None:
            max_seq_len = int(seq_lens.max().item()) if seq_lens.numel() else 0
        if window >= max_seq_len:  # no query is far enough from any key for the window to hide it
            window = 0
    return OP.run(which, q, k_cache, v_cache, page_table, seq_lens, cu_q_lens, scale=scale, causal=causal,
                  window=window, max_q_len=max_q_len, max_seq_len=max_seq_len)


def check_bounds_on_host(page_table, seq_lens, cu_q_lens, num_tokens: int, num_pages: int, page_size: int) -> None:
    """The checks the C++ backend always makes (csrc/cpu/paged_attention.cpp), for the other backends
    under FSGEN_CHECK_BOUNDS=1: a debugging aid, it copies the small index tensors to the host (a sync)."""
    pt, lens, cu = page_table.cpu().long(), seq_lens.cpu().long(), cu_q_lens.cpu().long()
    B, max_pages = pt.shape
    if B == 0:
        return
    q_len = cu[1:] - cu[:-1]
    if cu[0] < 0 or cu[-1] > num_tokens or bool((q_len < 0).any()):
        raise ValueError(f"{NAME}: cu_q_lens={cu.tolist()} must be non-decreasing prefix sums from 0 to at most the "
                         f"{num_tokens} query rows of q")
    bad = (lens < q_len) | (lens > max_pages * page_size)
    if bool(bad.any()):
        b = int(bad.nonzero()[0, 0])
        raise ValueError(f"{NAME}: seq_lens[{b}]={int(lens[b])} is out of range [{int(q_len[b])}, "
                         f"{max_pages * page_size}]: it counts the sequence's new tokens and must fit its page_table "
                         f"row ({max_pages} pages of {page_size})")
    used = torch.arange(max_pages)[None, :] < ((lens + page_size - 1) // page_size)[:, None]
    bad = used & ((pt < 0) | (pt >= num_pages))
    if bool(bad.any()):
        b, p = bad.nonzero()[0].tolist()
        raise ValueError(f"{NAME}: page_table[{b}, {p}]={int(pt[b, p])} is not a page of the cache (k_cache has "
                         f"{num_pages} pages); pass page ids in [0, {num_pages})")


@OP.impl("reference")
def _reference(backend, *args, **kw):
    return paged_attention_padded(*args, **kw)


@OP.impl("triton")
def _triton(backend, *args, **kw):
    from fsgen_engine.kernels.paged_attention import paged_attention_triton

    return paged_attention_triton(*args, **kw)


@OP.impl("cpu")
def _cpu(backend, q, k_cache, v_cache, page_table, seq_lens, cu_q_lens, *, scale, causal, window, max_q_len,
         max_seq_len):
    out = torch.empty_like(q)
    B = seq_lens.shape[0]
    if q.shape[0] == 0 or B == 0:
        return out
    seq_lens, cu_q_lens = seq_lens.contiguous(), cu_q_lens.contiguous()
    # The C++ entry checks cu_q_lens, seq_lens and the page ids it will read before reading anything.
    call_native(NAME, "cpu", q.device, q=q.data_ptr(), k_cache=k_cache.data_ptr(), v_cache=v_cache.data_ptr(),
                page_table=page_table.data_ptr(), seq_lens=seq_lens.data_ptr(), cu_q_lens=cu_q_lens.data_ptr(),
                out=out.data_ptr(), batch=B, num_tokens=q.shape[0], num_heads=q.shape[1],
                num_kv_heads=k_cache.shape[2], head_dim=q.shape[2], num_pages=k_cache.shape[0],
                page_size=k_cache.shape[1], max_pages=page_table.shape[1],
                pt_stride=page_table.stride(0) if page_table.numel() else 0, q_stride_n=q.stride(0),
                q_stride_h=q.stride(1), k_stride_page=k_cache.stride(0), k_stride_slot=k_cache.stride(1),
                k_stride_head=k_cache.stride(2), v_stride_page=v_cache.stride(0), v_stride_slot=v_cache.stride(1),
                v_stride_head=v_cache.stride(2), out_stride_n=out.stride(0), out_stride_h=out.stride(1),
                dtype=dtype_code(q), scale=scale, causal=bool(causal), window=window)
    return out


@OP.impl("flash")
def _flash(backend, q, k_cache, v_cache, page_table, seq_lens, cu_q_lens, *, scale, causal, window, max_q_len,
           max_seq_len):
    # flash-attn aligns the causal mask bottom-right (query j of q_len sees keys <= seq_len - q_len + j),
    # the same convention as this op. Its paged kernels may require page sizes that are multiples of 256
    # (older versions) or 16 (newer); errors from flash-attn are passed through. Its window_size=(left, right)
    # lets query i see keys in [i - left, i + right] (-1: unbounded), so our W is left = W - 1; the right
    # side stays open without causal, as in the other backends.
    from flash_attn import flash_attn_varlen_func, flash_attn_with_kvcache
    win = (window - 1, 0 if causal else -1) if window > 0 else (-1, -1)
    B = seq_lens.shape[0]
    N = q.shape[0]
    if max_q_len is None:
        max_q_len = int((cu_q_lens[1:] - cu_q_lens[:-1]).max().item())
    if max_q_len * B == N:  # uniform q_len: decode or verification
        out = flash_attn_with_kvcache(q.view(B, max_q_len, *q.shape[1:]), k_cache, v_cache, cache_seqlens=seq_lens,
                                      block_table=page_table, softmax_scale=scale, causal=causal,
                                      window_size=win)
        return out.reshape(q.shape)
    if max_seq_len is None:
        max_seq_len = int(seq_lens.max().item())
    cu_k = torch.zeros(B + 1, dtype=torch.int32, device=q.device)
    cu_k[1:] = torch.cumsum(seq_lens, 0)
    return flash_attn_varlen_func(q, k_cache, v_cache, cu_seqlens_q=cu_q_lens, cu_seqlens_k=cu_k,
                                  max_seqlen_q=max_q_len, max_seqlen_k=max_seq_len, softmax_scale=scale,
                                  causal=causal, window_size=win, block_table=page_table)
