"""Split-row Triton kernels for ops.token_stats at small batch (semantics: fsgen_engine/reference/token_stats.py).

With one program per row, a batch of 1 runs on one SM of 132 and reads a 151936-token row at a few
percent of the memory bandwidth. Here each row is cut into S column splits (grid B x S, about four
programs per SM in all): stage 1 folds each split into one online-softmax state (max, second value,
sum exp(x - max), sum exp(x - max)(x - max), index of the first maximum, first NaN) and stage 2
merges the S states of a row, exactly as the one-program kernel (kernels/token_stats.py) merges its
lanes, and writes the five statistics. Both stages are graph-capturable (no host sync).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fsgen_engine.kernels.token_stats import _fold_chunk, _fold_lanes, _write_stats


@triton.jit
def _split_stage1(x_ptr, stride_row, V, CH, ws_ptr, wi_ptr, B, S, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    sp = tl.program_id(1)
    base = x_ptr + row.to(tl.int64) * stride_row
    lanes = tl.arange(0, BLOCK)
    NEG_: tl.constexpr = float("-inf")
    m = tl.full([BLOCK], NEG_, tl.float32)
    t2 = tl.full([BLOCK], NEG_, tl.float32)
    s0 = tl.zeros([BLOCK], tl.float32)
    s1 = tl.zeros([BLOCK], tl.float32)
    idx = tl.full([BLOCK], V, tl.int32)
    nan_idx = tl.full([BLOCK], V, tl.int32)
    lo = sp * CH
    hi = tl.minimum(lo + CH, V)
    for start in range(lo, hi, BLOCK):
        offs = start + lanes
        x = tl.load(base + offs, mask=offs < hi, other=NEG_).to(tl.float32)
        m, t2, s0, s1, idx, nan_idx = _fold_chunk(m, t2, s0, s1, idx, nan_idx, x, offs, V)
    M, second, S0, S1, best, first_nan = _fold_lanes(m, t2, s0, s1, idx, nan_idx, V)
    k = row * S + sp
    n = B * S
    tl.store(ws_ptr + k, M)
    tl.store(ws_ptr + n + k, second)
    tl.store(ws_ptr + 2 * n + k, S0)
    tl.store(ws_ptr + 3 * n + k, S1)
    tl.store(wi_ptr + k, best)
    tl.store(wi_ptr + n + k, first_nan)


@triton.jit
def _split_stage2(ws_ptr, wi_ptr, V, out_ptr, arg_ptr, B, S, SMAX: tl.constexpr):
    row = tl.program_id(0)
    NEG_: tl.constexpr = float("-inf")
    j = tl.arange(0, SMAX)
    ok = j < S
    k = row * S + j
    n = B * S
    m = tl.load(ws_ptr + k, mask=ok, other=NEG_)
    t2 = tl.load(ws_ptr + n + k, mask=ok, other=NEG_)
    s0 = tl.load(ws_ptr + 2 * n + k, mask=ok, other=0.0)
    s1 = tl.load(ws_ptr + 3 * n + k, mask=ok, other=0.0)
    idx = tl.load(wi_ptr + k, mask=ok, other=V)
    nan_idx = tl.load(wi_ptr + n + k, mask=ok, other=V)
    M, second, S0, S1, best, first_nan = _fold_lanes(m, t2, s0, s1, idx, nan_idx, V)
    _write_stats(M, second, S0, S1, best, first_nan, V, out_ptr, arg_ptr, B, row)


def num_splits(batch: int, vocab: int, block: int, programs: int) -> int:
    """Column splits per row so that batch x splits is about ``programs``; 1 means one program per row."""
    return max(1, min(triton.cdiv(vocab, block), programs // max(batch, 1)))


def token_stats_split_triton(logits: torch.Tensor, out: torch.Tensor, argmax: torch.Tensor, splits: int) -> None:
    """``logits [B, V]`` -> ``out [4, B]`` float32, ``argmax [B]`` int64, with ``splits`` programs per row."""
    B, V = logits.shape
    block = 1024
    ch = triton.cdiv(triton.cdiv(V, splits), block) * block
    s = triton.cdiv(V, ch)
    ws = torch.empty(4 * B * s, dtype=torch.float32, device=logits.device)
    wi = torch.empty(2 * B * s, dtype=torch.int32, device=logits.device)
    _split_stage1[(B, s)](logits, logits.stride(0), V, ch, ws, wi, B, s, BLOCK=block, num_warps=4)
    _split_stage2[(B,)](ws, wi, V, out, argmax, B, s, SMAX=max(16, triton.next_power_of_2(s)), num_warps=1)
