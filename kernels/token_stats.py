"""Triton kernel for ops.token_stats: one program per row, loop over V in BLOCK chunks.

Each lane keeps its own online-softmax state (max m, sum e = exp(x-m), sum e*(x-m), top-2 values,
index of its first maximum, first NaN index), so the loop has no cross-lane reduction; the lanes
are merged once at the end. Special rows follow fsgen_engine/reference/token_stats.py.
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl


@triton.jit
def _fold_chunk(m, t2, s0, s1, idx, nan_idx, x, offs, V):
    """Fold one chunk ``x`` (float32, columns ``offs``) into the lane states."""
    NEG: tl.constexpr = float("-inf")
    isnan = x != x
    nan_idx = tl.minimum(nan_idx, tl.where(isnan, offs, V))
    xs = tl.where(isnan, NEG, x)
    # top-2 with multiplicity; strict > keeps the earlier index of equal maxima
    t2 = tl.maximum(t2, tl.minimum(m, xs))
    new_m = tl.maximum(m, xs)
    idx = tl.where(xs > m, offs, idx)
    # rescale this lane's sums to new_m; lanes still at -inf have nothing to rescale
    live = m > NEG
    delta = tl.where(live, m, 0.0) - tl.where(live, new_m, 0.0)
    scale = tl.exp(delta)
    s1 = tl.where(live, (s1 + delta * s0) * scale, 0.0)
    s0 = tl.where(live, s0 * scale, 0.0)
    has = xs > NEG
    d = tl.where(has, xs, 0.0) - tl.where(has, new_m, 0.0)
    e = tl.where(has, tl.exp(d), 0.0)
    return new_m, t2, s0 + e, s1 + e * d, idx, nan_idx


@triton.jit
def _fold_lanes(m, t2, s0, s1, idx, nan_idx, V):
    """Merge lane states (vectors) into one: (M, second, S0, S1 about M, first argmax, first NaN).
    S0/S1 are NaN/inf only for rows whose statistics are undefined anyway (an inf maximum)."""
    NEG: tl.constexpr = float("-inf")
    M = tl.max(m, axis=0)
    first_nan = tl.min(nan_idx, axis=0)
    best = tl.min(tl.where(m == M, idx, V), axis=0)
    winner = (m == M) & (idx == best)
    second = tl.maximum(tl.max(t2, axis=0), tl.max(tl.where(winner, NEG, m), axis=0))
    finite = (M > NEG) & (M < float("inf"))
    Ms = tl.where(finite, M, 0.0)
    live = m > NEG
    dl = tl.where(live, m, 0.0) - tl.where(live, Ms, 0.0)
    sc = tl.where(live, tl.exp(dl), 0.0)
    S0 = tl.sum(s0 * sc, axis=0)
    S1 = tl.sum(tl.where(live, (s1 + dl * s0) * sc, 0.0), axis=0)
    return M, second, S0, S1, best, first_nan


@triton.jit
def _write_stats(M, second, S0, S1, best, first_nan, V, out_ptr, arg_ptr, B, row):
    """The five statistics of one row from its merged state (special rows: the reference's rules)."""
    NEG: tl.constexpr = float("-inf")
    best = tl.where(best >= V, 0, best)  # all -inf: index 0
    finite = (M > NEG) & (M < float("inf"))
    Ms = tl.where(finite, M, 0.0)
    S0 = tl.where(finite, S0, 1.0)
    log_s0 = tl.log(S0)
    lse = M + log_s0
    max_prob = 1.0 / S0
    entropy = tl.maximum(log_s0 - S1 / S0, 0.0)
    margin = (1.0 - tl.exp(tl.where(finite & (second > NEG), second, Ms) - Ms)) / S0
    margin = tl.where(second > NEG, margin, max_prob)
    has_nan = first_nan < V
    bad = has_nan | (~finite)
    nan = float("nan")
    tl.store(out_ptr + row, tl.where(bad, nan, entropy))
    tl.store(out_ptr + B + row, tl.where(bad, nan, max_prob))
    tl.store(out_ptr + 2 * B + row, tl.where(bad, nan, margin))
    tl.store(out_ptr + 3 * B + row, tl.where(has_nan, nan, tl.where(finite, lse, M)))
    tl.store(arg_ptr + row, tl.where(has_nan, first_nan, best).to(tl.int64))


@triton.jit
def _token_stats_kernel(x_ptr, stride_row, V, out_ptr, arg_ptr, B, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    base = x_ptr + row.to(tl.int64) * stride_row
    lanes = tl.arange(0, BLOCK)
    NEG: tl.constexpr = float("-inf")
    m = tl.full([BLOCK], NEG, tl.float32)
    t2 = tl.full([BLOCK], NEG, tl.float32)
    s0 = tl.zeros([BLOCK], tl.float32)
    s1 = tl.zeros([BLOCK], tl.float32)
    idx = tl.full([BLOCK], V, tl.int32)
    nan_idx = tl.full([BLOCK], V, tl.int32)
    for start in range(0, V, BLOCK):
        offs = start + lanes
        x = tl.load(base + offs, mask=offs < V, other=NEG).to(tl.float32)
        m, t2, s0, s1, idx, nan_idx = _fold_chunk(m, t2, s0, s1, idx, nan_idx, x, offs, V)
    M, second, S0, S1, best, first_nan = _fold_lanes(m, t2, s0, s1, idx, nan_idx, V)
    _write_stats(M, second, S0, S1, best, first_nan, V, out_ptr, arg_ptr, B, row)


def token_stats_triton(logits: torch.Tensor, out: torch.Tensor, argmax: torch.Tensor) -> None:
    """``logits [B, V]`` (unit stride along V) -> ``out [4, B]`` float32 (entropy, max_prob, margin,
    logsumexp) and ``argmax [B]`` int64, written in place by one launch."""
    B, V = logits.shape
    if logits.is_cuda:
        # Small batches: split each row over many programs so the whole GPU reads it.
        from fsgen_engine.kernels.token_stats_split import num_splits, token_stats_split_triton

        index = logits.device.index if logits.device.index is not None else torch.cuda.current_device()
        splits = num_splits(B, V, 1024, 4 * _num_sms(index))
        if splits > 1:
            token_stats_split_triton(logits, out, argmax, splits)
            return
    block = min(triton.next_power_of_2(V), 2048 if logits.element_size() == 4 else 4096)
    num_warps = 8 if block >= 2048 else 4
    _token_stats_kernel[(B,)](logits, logits.stride(0), V, out, argmax, B, BLOCK=block, num_warps=num_warps)



@functools.lru_cache(maxsize=None)
def _num_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count
