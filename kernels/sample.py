"""Triton kernel for ops.sample, plus the row-filter helpers shared with kernels/verify.py.

Each program handles BLOCK_R rows (1 on GPU for large V; many under the interpreter for small V)
and streams each row in BLOCK_V chunks. Filters are thresholds found by bisection over the
monotone int32 key of z = x / t (32 steps -> exact): top-k counts keys >= T, top-p sums
exp(z - zmax) over keys >= T; each step re-reads the row (from L2 on a GPU). Then one pass runs
the exponential race argmax w_j / E_j with Philox noise keyed by (seed, column, row counter).
Semantics: fsgen_engine/reference/sample.py (a +inf logit: the first +inf is the token).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

NEG_INF_KEY = tl.constexpr(-2139095041)  # key(-inf); finite values have larger keys
STREAM_RACE = tl.constexpr(1)
STREAM_ACCEPT = tl.constexpr(2)


@triton.jit
def _key(z):
    # Order-preserving float32 -> int32: flip the magnitude bits of negatives.
    b = z.to(tl.int32, bitcast=True)
    return tl.where(b < 0, b ^ 0x7FFFFFFF, b)


@triton.jit
def _load_row(ptrs, cols, V, rmask):
    x = tl.load(ptrs[:, None] + cols[None, :], mask=rmask[:, None] & (cols < V)[None, :], other=float("-inf"))
    x = x.to(tl.float32)
    return tl.where(x != x, float("-inf"), x)


@triton.jit
def _merge_argmax(best, arg, val, idx):
    # Keep the earlier (lower index) winner on ties: chunks arrive in increasing column order.
    take = val > best
    return tl.where(take, val, best), tl.where(take, idx, arg)


@triton.jit
def _chunk_argmax(s, cols, BIG: tl.constexpr):
    m = tl.max(s, axis=1)
    idx = tl.min(tl.where(s == m[:, None], cols[None, :], BIG), axis=1)
    return m, idx


@triton.jit
def _load_z(ptrs, cols, V, rmask, t_safe):
    return _load_row(ptrs, cols, V, rmask) / t_safe[:, None]


@triton.jit
def _bisect_key(ptrs, V, rmask, t_safe, zmax, lo, hi, target, MASS: tl.constexpr, BLOCK_R: tl.constexpr,
                BLOCK_V: tl.constexpr):
    """Largest key T in [lo, hi] whose weight over {key(z) >= T} reaches ``target``: the token count,
    or the mass sum exp(z - zmax) when MASS. 32 halvings of the int32 key range are exact."""
    offs = tl.arange(0, BLOCK_V)
    for _ in range(32):
        mid = lo + (hi - lo + 1) // 2
        acc = tl.zeros((BLOCK_R,), tl.float32)  # counts are exact in float32 up to 2^24 tokens
        for c in range(0, V, BLOCK_V):
            z = _load_z(ptrs, c + offs, V, rmask, t_safe)
            above = _key(z).to(tl.int64) >= mid[:, None]
            if MASS:
                acc += tl.sum(tl.where(above, tl.exp(z - zmax[:, None]), 0.0), axis=1)
            else:
                acc += tl.sum(above.to(tl.float32), axis=1)
        ok = acc >= target
        lo = tl.where(ok, mid, lo)
        hi = tl.where(ok, hi, mid - 1)
    return lo


@triton.jit
def _row_filter(ptrs, V, rmask, t, top_k, top_p, min_p, BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr):
    """Per-row filter state for rows at ``ptrs``: (t_safe, zmax, argmax, thr_key, total, greedy).
    Token j is kept iff key(z_j) >= thr_key and exp(z_j - zmax) >= min_p (z_j finite). ``greedy``
    rows are one-hot on ``argmax``: temperature 0, a +inf logit (the first +inf is the only
    candidate), or no finite logit (token 0)."""
    BIG: tl.constexpr = 2147483647
    offs = tl.arange(0, BLOCK_V)
    xmax = tl.full((BLOCK_R,), float("-inf"), tl.float32)
    arg = tl.zeros((BLOCK_R,), tl.int32)
    for c in range(0, V, BLOCK_V):
        cols = c + offs
        x = _load_row(ptrs, cols, V, rmask)
        m, idx = _chunk_argmax(x, cols, BIG)
        xmax, arg = _merge_argmax(xmax, arg, m, idx)
    greedy = (t == 0.0) | (xmax == float("-inf")) | (xmax == float("inf"))
    t_safe = tl.where(greedy, 1.0, t)
    zmax = xmax / t_safe
    hi0 = _key(zmax).to(tl.int64)
    thr = tl.full((BLOCK_R,), NEG_INF_KEY + 1, tl.int64)

    do_k = (top_k > 0) & (top_k < V) & ~greedy & rmask
    if tl.max(do_k.to(tl.int32), axis=0) > 0:
        lo = _bisect_key(ptrs, V, rmask, t_safe, zmax, thr, hi0, top_k.to(tl.float32), False, BLOCK_R, BLOCK_V)
        thr = tl.where(do_k, lo, thr)

    total = tl.zeros((BLOCK_R,), tl.float32)
    for c in range(0, V, BLOCK_V):
        z = _load_z(ptrs, c + offs, V, rmask, t_safe)
        total += tl.sum(tl.where(_key(z).to(tl.int64) >= thr[:, None], tl.exp(z - zmax[:, None]), 0.0), axis=1)

    do_p = (top_p < 1.0) & ~greedy & rmask
    if tl.max(do_p.to(tl.int32), axis=0) > 0:
        lo = _bisect_key(ptrs, V, rmask, t_safe, zmax, thr, hi0, top_p * total, True, BLOCK_R, BLOCK_V)
        thr = tl.where(do_p, lo, thr)

    # Normaliser of the kept set (after min-p).
    total = tl.zeros((BLOCK_R,), tl.float32)
    for c in range(0, V, BLOCK_V):
        total += tl.sum(_weights(_load_z(ptrs, c + offs, V, rmask, t_safe), zmax, thr, min_p), axis=1)
    return t_safe, zmax, arg, thr, total, greedy


@triton.jit
def _weights(z, zmax, thr, min_p):
    w = tl.exp(z - zmax[:, None])
    keep = (_key(z).to(tl.int64) >= thr[:, None]) & (w >= min_p[:, None]) & (z > float("-inf"))
    return tl.where(keep, w, 0.0)


@triton.jit
def _exp_noise(seed, cols, ctr, stream: tl.constexpr):
    # Exp(1) noise from Philox keyed by seed, counters (column, row counter, stream).
    c0 = (cols[None, :] + ctr[:, None] * 0).to(tl.uint32)
    c1 = (cols[None, :] * 0 + ctr[:, None]).to(tl.uint32)
    c2 = tl.full(c0.shape, stream, tl.uint32)
    r, _, _, _ = tl.philox(seed, c0, c1, c2, c2 * 0)
    u = tl.uint_to_uniform_float(r)
    return -tl.log(tl.maximum(u, 1e-30))


@triton.jit
def _load_params(rows, rmask, temp_ptr, topk_ptr, topp_ptr, minp_ptr, seed_ptr):
    """Per-row (temperature, top_k, top_p, min_p) of ``rows`` (masked rows: neutral values) and the seed."""
    t = tl.load(temp_ptr + rows, mask=rmask, other=1.0)
    k = tl.load(topk_ptr + rows, mask=rmask, other=0)
    tp = tl.load(topp_ptr + rows, mask=rmask, other=1.0)
    mp = tl.load(minp_ptr + rows, mask=rmask, other=0.0)
    return t, k, tp, mp, tl.load(seed_ptr)


@triton.jit
def _sample_kernel(logits_ptr, stride_b, B, V, temp_ptr, topk_ptr, topp_ptr, minp_ptr, seed_ptr, out_ptr,
                   BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr, ONLY_UNFINISHED: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < B
    if ONLY_UNFINISHED:  # finish the rows kernels/sample_split.py left at -1, skip the others
        rmask = rmask & (tl.load(out_ptr + rows, mask=rmask, other=0) < 0)
    if tl.max(rmask.to(tl.int32), axis=0) > 0:
        _sample_rows(logits_ptr, stride_b, V, temp_ptr, topk_ptr, topp_ptr, minp_ptr, seed_ptr, out_ptr, rows, rmask,
                     BLOCK_R, BLOCK_V)


@triton.jit
def _sample_rows(logits_ptr, stride_b, V, temp_ptr, topk_ptr, topp_ptr, minp_ptr, seed_ptr, out_ptr, rows, rmask,
                 BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr):
    t, k, tp, mp, seed = _load_params(rows, rmask, temp_ptr, topk_ptr, topp_ptr, minp_ptr, seed_ptr)
    ptrs = logits_ptr + rows.to(tl.int64) * stride_b
    t_safe, zmax, arg, thr, total, greedy = _row_filter(ptrs, V, rmask, t, k, tp, mp, BLOCK_R, BLOCK_V)
    offs = tl.arange(0, BLOCK_V)
    best = tl.full((BLOCK_R,), -1.0, tl.float32)
    barg = tl.zeros((BLOCK_R,), tl.int32)
    for c in range(0, V, BLOCK_V):
        cols = c + offs
        z = _load_z(ptrs, cols, V, rmask, t_safe)
        s = tl.where((cols < V)[None, :], _weights(z, zmax, thr, mp) / _exp_noise(seed, cols, rows, STREAM_RACE), -1.0)
        m, idx = _chunk_argmax(s, cols, 2147483647)
        best, barg = _merge_argmax(best, barg, m, idx)
    tok = tl.where(greedy, arg, barg)
    tl.store(out_ptr + rows, tok.to(tl.int64), mask=rmask)


def block_sizes(batch: int, vocab: int, device: torch.device) -> tuple[int, int, int]:
    """(BLOCK_R, BLOCK_V, num_warps): one row per program on a GPU for large V; under the
    interpreter many rows per program (it runs programs one at a time in Python)."""
    if device.type == "cuda":
        # At least 256 columns: Triton 3.6 fails to compile the sampled verify kernel for tiny blocks
        # ("operand does not dominate this use" in TritonGPURemoveLayoutConversions, V=8/11 seen).
        block_v = min(max(triton.next_power_of_2(vocab), 256), 4096)
        block_r = max(1, min(triton.next_power_of_2(batch), 1024 // block_v))
        return block_r, block_v, 8 if block_v >= 2048 else 4
    block_v = min(triton.next_power_of_2(vocab), 2048)
    block_r = max(1, min(triton.next_power_of_2(batch), 32768 // block_v))
    return block_r, block_v, 4


def sample_triton(logits, temperature, top_k, top_p, min_p, seed, out, *, only_unfinished: bool = False) -> None:
    """One program per row (or per BLOCK_R rows). ``only_unfinished``: sample only the rows whose
    ``out`` is negative (the rows kernels/sample_split.py could not finish from its candidates)."""
    b, v = logits.shape
    block_r, block_v, warps = block_sizes(b, v, logits.device)
    grid = (triton.cdiv(b, block_r),)
    _sample_kernel[grid](logits, logits.stride(0), b, v, temperature, top_k, top_p, min_p, seed, out,
                         BLOCK_R=block_r, BLOCK_V=block_v, ONLY_UNFINISHED=only_unfinished, num_warps=warps)
