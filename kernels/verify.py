"""Triton kernel for ops.verify (semantics: fsgen_engine/reference/verify.py).

Each program owns BLOCK_R rows and walks positions 0..K; per position it rebuilds the target
distribution with the sample filter (kernels/sample.py) and either accepts the draft token
(u * q(x) < p(x)), emits a residual sample max(0, p - q) (p when that is all zero) at the first
rejection, or emits the bonus sample at position num_draft[b]. Rows that finished stop reading.
"""
from __future__ import annotations

import triton
import triton.language as tl

from fsgen_engine.kernels.sample import (STREAM_ACCEPT, STREAM_RACE, _chunk_argmax, _exp_noise, _load_params,
                                         _load_z, _merge_argmax, _row_filter, _weights, block_sizes)


@triton.jit
def _verify_kernel(draft_ptr, d_s0, logits_ptr, l_s0, l_s1, q_ptr, q_s0, q_s1, nd_ptr, B, K, V, temp_ptr, topk_ptr,
                   topp_ptr, minp_ptr, seed_ptr, acc_ptr, next_ptr, HAS_Q: tl.constexpr, BLOCK_R: tl.constexpr,
                   BLOCK_V: tl.constexpr, ONLY_UNFINISHED: tl.constexpr):
    BIG: tl.constexpr = 2147483647
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < B
    t, k, tp, mp, seed = _load_params(rows, rmask, temp_ptr, topk_ptr, topp_ptr, minp_ptr, seed_ptr)
    n = tl.minimum(tl.maximum(tl.load(nd_ptr + rows, mask=rmask, other=0), 0), K)
    offs = tl.arange(0, BLOCK_V)
    rows64 = rows.to(tl.int64)
    if ONLY_UNFINISHED:  # finish the rows kernels/sample_split.py left at -1, skip the others
        rmask = rmask & (tl.load(acc_ptr + rows, mask=rmask, other=0) < 0)
    active = rmask
    accepted = n
    token = tl.zeros((BLOCK_R,), tl.int64)
    for i in range(0, K + 1):
        if tl.max(active.to(tl.int32), axis=0) > 0:
            ptrs = logits_ptr + rows64 * l_s0 + i * l_s1
            t_safe, zmax, arg, thr, total, greedy = _row_filter(ptrs, V, active, t, k, tp, mp, BLOCK_R, BLOCK_V)
            inv_total = tl.where(greedy, 0.0, 1.0 / tl.maximum(total, 1e-30))
            ctr = rows * (K + 1) + i
            is_bonus = i >= n
            x = tl.load(draft_ptr + rows64 * d_s0 + i, mask=active & ~is_bonus, other=-1)
            in_range = (x >= 0) & (x < V)
            xs = tl.where(in_range, x, 0)
            zx = tl.load(ptrs + xs, mask=active & in_range, other=float("-inf")).to(tl.float32)
            zx = tl.where(zx != zx, float("-inf"), zx) / t_safe
            wx = tl.sum(_weights(zx[:, None], zmax, thr, mp), axis=1)
            px = tl.where(greedy, (xs == arg).to(tl.float32), wx * inv_total)
            px = tl.where(in_range, px, 0.0)
            if HAS_Q:
                qrow = q_ptr + rows64 * q_s0 + i * q_s1
                qx = tl.load(qrow + xs, mask=active & in_range & ~is_bonus, other=0.0).to(tl.float32)
            else:
                qrow = q_ptr
                qx = tl.where(in_range, 1.0, 0.0)
            c0 = (rows * 0 + i).to(tl.uint32)
            r, _, _, _ = tl.philox(seed, c0, rows.to(tl.uint32), c0 * 0 + STREAM_ACCEPT, c0 * 0)
            u = tl.uint_to_uniform_float(r)
            acc_ok = u * qx < px
            emit = active & (is_bonus | ~acc_ok)
            use_resid = ~is_bonus & ~greedy
            # One pass: the race over p and over the residual max(0, p - q) share the noise.
            best_p = tl.full((BLOCK_R,), -1.0, tl.float32)
            arg_p = tl.zeros((BLOCK_R,), tl.int32)
            best_r = tl.full((BLOCK_R,), -1.0, tl.float32)
            arg_r = tl.zeros((BLOCK_R,), tl.int32)
            rsum = tl.zeros((BLOCK_R,), tl.float32)
            if tl.max((emit & ~greedy).to(tl.int32), axis=0) > 0:
                for c in range(0, V, BLOCK_V):
                    cols = c + offs
                    cmask = (cols < V)[None, :]
                    lm = (emit & ~greedy)[:, None] & cmask
                    z = _load_z(ptrs, cols, V, emit & ~greedy, t_safe)
                    p = _weights(z, zmax, thr, mp) * inv_total[:, None]
                    if HAS_Q:
                        q = tl.load(qrow[:, None] + cols[None, :], mask=lm & use_resid[:, None], other=0.0)
                        q = q.to(tl.float32)
                    else:
                        q = (cols[None, :] == xs[:, None]).to(tl.float32)
                    res = tl.maximum(p - q, 0.0)
                    rsum += tl.sum(tl.where(lm, res, 0.0), axis=1)
                    e = _exp_noise(seed, cols, ctr, STREAM_RACE)
                    m, idx = _chunk_argmax(tl.where(cmask, p / e, -1.0), cols, BIG)
                    best_p, arg_p = _merge_argmax(best_p, arg_p, m, idx)
                    m, idx = _chunk_argmax(tl.where(cmask, res / e, -1.0), cols, BIG)
                    best_r, arg_r = _merge_argmax(best_r, arg_r, m, idx)
            sampled = tl.where(use_resid & (rsum > 0.0), arg_r, arg_p)
            tok = tl.where(greedy, arg, sampled).to(tl.int64)
            token = tl.where(emit, tok, token)
            accepted = tl.where(emit, tl.minimum(n, i), accepted)
            active = active & ~emit
    tl.store(acc_ptr + rows, accepted.to(tl.int64), mask=rmask)
    tl.store(next_ptr + rows, token, mask=rmask)


def verify_triton(draft_tokens, target_logits, draft_probs, num_draft, temperature, top_k, top_p, min_p, seed,
                  accepted, next_token, *, only_unfinished: bool = False) -> None:
    """One program per row (or per BLOCK_R rows). ``only_unfinished``: only the rows whose
    ``accepted`` is negative (those kernels/sample_split.py could not finish from its candidates)."""
    b, k1, v = target_logits.shape
    block_r, block_v, warps = block_sizes(b, v, target_logits.device)
    has_q = draft_probs is not None
    q = draft_probs if has_q else target_logits  # placeholder pointer, never read
    grid = (triton.cdiv(b, block_r),)
    _verify_kernel[grid](draft_tokens, draft_tokens.stride(0), target_logits, target_logits.stride(0),
                         target_logits.stride(1), q, q.stride(0) if has_q else 0, q.stride(1) if has_q else 0,
                         num_draft, b, k1 - 1, v, temperature, top_k, top_p, min_p, seed, accepted, next_token,
                         HAS_Q=has_q, BLOCK_R=block_r, BLOCK_V=block_v, ONLY_UNFINISHED=only_unfinished,
                         num_warps=warps)
