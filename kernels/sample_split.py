"""Split-row Triton sampling for ops.sample (semantics: fsgen_engine/reference/sample.py).

The one-program-per-row kernel (kernels/sample.py) finds the top-k / top-p thresholds by bisection,
re-reading the row 60+ times from one SM: about a millisecond per call at V=151936. Here the row is
read once, by the whole GPU:

stage 1, grid (rows, splits): each program takes CH columns of one row, computes z = x / t and
    keeps its KC best tokens (``tl.topk`` over (key(z) << 32 | ~column): value order, lowest column
    first on ties), plus the split's max and sum of exp(z - max); rows with no filter at all also
    run the exponential race over the split (argmax z - log E).
stage 2, grid (rows,): merges the splits' candidates into the row's KC best, applies top-k, top-p
    and min-p on them and runs the race over the survivors, with the same Philox noise per (seed,
    column, row) as the race of stage 1.
fallback, grid (rows,): the kept set is provably inside the KC candidates except when top_k > KC,
    ties at the top-k boundary reach the last candidate, or top-p / min-p keep the last candidate;
    stage 2 marks such rows (-1) and kernels/sample.py's full-row kernel samples them (no host
    sync: it skips rows stage 2 finished).
Greedy rows take the first candidate; a +inf logit is the only candidate (first +inf wins); a row
with no finite logit returns token 0.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fsgen_engine.kernels.sample import STREAM_ACCEPT, STREAM_RACE, _exp_noise, _key

CH = 4096  # columns per stage-1 program: one tl.topk over 4096 packed keys
BIG = tl.constexpr(2147483647)


@triton.jit
def _unkey(k):
    b = tl.where(k < 0, k ^ 0x7FFFFFFF, k)
    return b.to(tl.float32, bitcast=True)


@triton.jit
def _noise(seed, cols, ctr):
    """Exp(1) noise for the 1-D column vector ``cols`` of row counter ``ctr`` (kernels/sample.py's stream)."""
    e = _exp_noise(seed, cols, tl.full([1], ctr, tl.int32), STREAM_RACE)
    return tl.reshape(e, cols.shape)


@triton.jit
def _stage1(x_ptr, s_b, s_p, P, V, temp_ptr, topk_ptr, topp_ptr, minp_ptr, seed_ptr, cand_ptr, mz_ptr, sz_ptr,
            rs_ptr, rc_ptr, S, CH_: tl.constexpr, KC: tl.constexpr):
    r = tl.program_id(0)            # logical row: batch row b, position i (P positions per batch row)
    sp = tl.program_id(1)
    b = r // P
    i = r % P
    NEG: tl.constexpr = float("-inf")
    cols = sp * CH_ + tl.arange(0, CH_)
    inb = cols < V
    x = tl.load(x_ptr + b.to(tl.int64) * s_b + i.to(tl.int64) * s_p + cols, mask=inb, other=NEG).to(tl.float32)
    x = tl.where(x != x, NEG, x)
    t = tl.load(temp_ptr + b)
    z = x / tl.where(t == 0.0, 1.0, t)
    packed = (_key(z).to(tl.int64) << 32) | (0x7FFFFFFF - cols).to(tl.int64)
    top = tl.topk(packed, KC)
    base = (r * S + sp).to(tl.int64)
    tl.store(cand_ptr + base * KC + tl.arange(0, KC), top)
    zm = tl.max(z, axis=0)
    live = z > NEG
    e = tl.where(live, tl.exp(z - tl.where(zm > NEG, zm, 0.0)), 0.0)
    tl.store(mz_ptr + base, zm)
    tl.store(sz_ptr + base, tl.sum(e, axis=0))
    no_filter = (t > 0.0) & (tl.load(topk_ptr + b) == 0) & (tl.load(topp_ptr + b) >= 1.0) & \
        (tl.load(minp_ptr + b) <= 0.0)
    if no_filter:
        seed = tl.load(seed_ptr)
        score = tl.where(live, z - tl.log(_noise(seed, cols, r)), NEG)
        best = tl.max(score, axis=0)
        tl.store(rs_ptr + base, best)
        tl.store(rc_ptr + base, tl.min(tl.where(score == best, cols, BIG), axis=0))


@triton.jit
def _row_candidates(cand_ptr, mz_ptr, sz_ptr, r, S, SMAX: tl.constexpr, KC: tl.constexpr):
    """The row's KC best tokens, sorted: (z, column), and its softmax normaliser sum exp(z - z0)."""
    NEG: tl.constexpr = float("-inf")
    j = tl.arange(0, SMAX * KC)
    top = tl.topk(tl.load(cand_ptr + r.to(tl.int64) * S * KC + j, mask=j < S * KC, other=-9223372036854775807),
                  KC)
    z = _unkey((top >> 32).to(tl.int32))
    col = 0x7FFFFFFF - (top & 0xFFFFFFFF).to(tl.int32)
    s = tl.arange(0, SMAX)
    mz = tl.load(mz_ptr + r * S + s, mask=s < S, other=NEG)
    sz = tl.load(sz_ptr + r * S + s, mask=s < S, other=0.0)
    M = tl.max(mz, axis=0)
    total = tl.sum(tl.where(mz > NEG, sz * tl.exp(mz - tl.where(M > NEG, M, 0.0)), 0.0), axis=0)
    return z, col, M, total


@triton.jit
def _kept(z, M, total_row, k, tp, mp, V, KC: tl.constexpr):
    """The reference's filters on the sorted candidates ``z``: (keep mask, weights exp(z - z0), overflow).

    Every filter keeps a prefix of the value order, so a token outside the candidates (value <= the
    last candidate's) is dropped as soon as the last candidate is. ``overflow``: the last candidate
    survives every filter, so the kept set may reach past the candidates (the caller then samples
    the row with a full pass)."""
    NEG: tl.constexpr = float("-inf")
    pos = tl.arange(0, KC)
    z0 = tl.max(z, axis=0)
    valid = z > NEG
    w = tl.where(valid, tl.exp(z - z0), 0.0)
    z_last = tl.min(z, axis=0)
    w_last = tl.where(z_last > NEG, tl.exp(z_last - z0), 0.0)
    # top-k: keep z >= the k-th largest value (ties kept)
    kk = tl.where(k > 0, tl.minimum(k, V), 0)
    zk = tl.where((kk > 0) & (kk <= KC), tl.sum(tl.where(pos == kk - 1, z, 0.0), axis=0), NEG)
    keep = valid & (z >= zk)
    topk_inside = (kk > 0) & (kk <= KC) & (z_last < zk)
    survives = (z_last > NEG) & ~topk_inside
    # top-p on the renormalised top-k survivors (their total is exact when top-k cut inside, or is off)
    total = tl.where(kk > 0, tl.sum(tl.where(keep, w, 0.0), axis=0), total_row * tl.exp(M - z0))
    p = w / total
    cum = tl.cumsum(tl.where(keep, p, 0.0), axis=0)
    n_keep = tl.sum(keep.to(tl.int32), axis=0)
    cut = tl.sum(((cum < tp) & keep).to(tl.int32), axis=0)     # first kept token whose cum reaches top_p
    short = cut >= n_keep
    tau = tl.sum(tl.where(pos == tl.minimum(cut, n_keep - 1), p, 0.0), axis=0)
    do_p = tp < 1.0
    keep = tl.where(do_p, keep & (p >= tau), keep)
    exact_p = do_p & ((kk == 0) | topk_inside) & ~short
    survives = survives & ~(exact_p & (w_last / total < tau))
    # min-p relative to the most likely survivor (w0 = 1): scale-free
    keep = keep & (w >= mp)
    survives = survives & (w_last >= mp)
    return keep, w, survives


@triton.jit
def _sample_stage2(cand_ptr, mz_ptr, sz_ptr, rs_ptr, rc_ptr, S, V, temp_ptr, topk_ptr, topp_ptr, minp_ptr, seed_ptr,
                   out_ptr, SMAX: tl.constexpr, KC: tl.constexpr):
    r = tl.program_id(0)
    NEG: tl.constexpr = float("-inf")
    z, col, M, total_row = _row_candidates(cand_ptr, mz_ptr, sz_ptr, r, S, SMAX, KC)
    t = tl.load(temp_ptr + r)
    k = tl.load(topk_ptr + r)
    tp = tl.load(topp_ptr + r)
    mp = tl.load(minp_ptr + r)
    z0 = tl.max(z, axis=0)
    first = tl.min(tl.where(z == z0, col, BIG), axis=0)    # argmax, lowest column on ties
    decided = (t == 0.0) | (z0 == NEG) | (z0 == float("inf"))
    tok = tl.where(z0 == NEG, 0, first)
    no_filter = (k == 0) & (tp >= 1.0) & (mp <= 0.0)
    if not decided:
        if no_filter:
            s = tl.arange(0, SMAX)
            rs = tl.load(rs_ptr + r * S + s, mask=s < S, other=NEG)
            rc = tl.load(rc_ptr + r * S + s, mask=s < S, other=BIG)
            best = tl.max(rs, axis=0)
            tok = tl.min(tl.where(rs == best, rc, BIG), axis=0)
        else:
            keep, w, over = _kept(z, M, total_row, k, tp, mp, V, KC)
            seed = tl.load(seed_ptr)
            score = tl.where(keep, w / _noise(seed, col, r), -1.0)
            best = tl.max(score, axis=0)
            tok = tl.where(over, -1, tl.min(tl.where(score == best, col, BIG), axis=0))
    tl.store(out_ptr + r, tok.to(tl.int64))


def candidates_per_split(max_top_k: int | None) -> int:
    """KC: 64 candidates, more when a caller says top-k goes higher (rows above KC take the full pass)."""
    return 64 if max_top_k is None or max_top_k <= 64 else 128 if max_top_k <= 128 else 256


def sample_split_triton(logits, temperature, top_k, top_p, min_p, seed, out, *, max_top_k: int | None = None,
                        ch: int = CH, kc: int | None = None) -> None:
    """Same contract as kernels/sample.py ``sample_triton`` (``out [B]`` int64 written in place).
    ``ch``: columns per stage-1 program, ``kc``: candidates per split (powers of two, kc <= ch; tests
    use small values to keep the interpreter quick)."""
    from fsgen_engine.kernels.sample import sample_triton

    B, V = logits.shape
    kc = kc or candidates_per_split(max_top_k)
    S = triton.cdiv(V, ch)
    dev = logits.device
    cand = torch.empty(B * S * kc, dtype=torch.int64, device=dev)
    mz, sz, rs = (torch.empty(B * S, dtype=torch.float32, device=dev) for _ in range(3))
    rc = torch.empty(B * S, dtype=torch.int32, device=dev)
    _stage1[(B, S)](logits, logits.stride(0), 0, 1, V, temperature, top_k, top_p, min_p, seed, cand, mz, sz, rs, rc,
                    S, CH_=ch, KC=kc, num_warps=8)
    _sample_stage2[(B,)](cand, mz, sz, rs, rc, S, V, temperature, top_k, top_p, min_p, seed, out,
                         SMAX=triton.next_power_of_2(S), KC=kc, num_warps=4)
    sample_triton(logits, temperature, top_k, top_p, min_p, seed, out, only_unfinished=True)


@triton.jit
def _verify_stage2(cand_ptr, mz_ptr, sz_ptr, S, V, K, draft_ptr, d_s0, q_ptr, q_s0, q_s1, nd_ptr, temp_ptr,
                   topk_ptr, topp_ptr, minp_ptr, seed_ptr, acc_ptr, next_ptr, HAS_Q: tl.constexpr,
                   SMAX: tl.constexpr, KC: tl.constexpr):
    """One program per batch row: walks positions 0..K over the candidates of each position (stage 1
    ran over the B x (K+1) target rows), as kernels/verify.py does over full rows. A row whose kept set
    may leave the candidates is left at num_accepted = -1 for the full-row fallback."""
    b = tl.program_id(0)
    NEG: tl.constexpr = float("-inf")
    t = tl.load(temp_ptr + b)
    k = tl.load(topk_ptr + b)
    tp = tl.load(topp_ptr + b)
    mp = tl.load(minp_ptr + b)
    n = tl.minimum(tl.maximum(tl.load(nd_ptr + b), 0), K)
    seed = tl.load(seed_ptr)
    active = n >= 0          # always true: tensors, so the loop carries them with one type
    accepted = n
    token = tl.full([], 0, tl.int32)
    for i in range(0, K + 1):
        if active:
            i = b * 0 + i        # a tensor under the interpreter too (where range() yields ints)
            r = b * (K + 1) + i
            z, col, M, total_row = _row_candidates(cand_ptr, mz_ptr, sz_ptr, r, S, SMAX, KC)
            z0 = tl.max(z, axis=0)
            first = tl.min(tl.where(z == z0, col, BIG), axis=0)
            greedy = (t == 0.0) | (z0 == NEG) | (z0 == float("inf"))
            arg = tl.where(z0 == NEG, 0, first)
            is_bonus = i >= n
            not_bonus = i < n
            x = tl.load(draft_ptr + b.to(tl.int64) * d_s0 + i, mask=not_bonus, other=-1)
            in_range = (x >= 0) & (x < V)
            if greedy:
                emit = is_bonus | (x != arg)
                tok = arg
                over = x < -1      # never: the greedy path needs no full pass
            else:
                keep, w, over = _kept(z, M, total_row, k, tp, mp, V, KC)
                wk = tl.where(keep, w, 0.0)
                p = wk / tl.sum(wk, axis=0)
                px = tl.sum(tl.where(col == x, p, 0.0), axis=0)
                if HAS_Q:
                    qrow = q_ptr + b.to(tl.int64) * q_s0 + i.to(tl.int64) * q_s1
                    qx = tl.load(qrow + tl.where(in_range, x, 0), mask=in_range & not_bonus, other=0.0).to(tl.float32)
                    qc = tl.load(qrow + col, mask=(wk * not_bonus.to(tl.float32)) > 0.0, other=0.0).to(tl.float32)
                else:
                    qx = tl.where(in_range, 1.0, 0.0)
                    qc = (col == x).to(tl.float32)
                c0 = i.to(tl.uint32)
                ru, _, _, _ = tl.philox(seed, c0, b.to(tl.uint32), c0 * 0 + STREAM_ACCEPT, c0 * 0)
                u = tl.uint_to_uniform_float(ru)
                emit = is_bonus | ~(u * qx < px)
                res = tl.where(is_bonus, 0.0, tl.maximum(p - qc, 0.0))
                dist = tl.where(tl.sum(res, axis=0) > 0.0, res, p)
                score = tl.where(dist > 0.0, dist / _noise(seed, col, r), -1.0)
                best = tl.max(score, axis=0)
                tok = tl.min(tl.where(score == best, col, BIG), axis=0)
            if over:
                accepted = n * 0 - 1
                active = n < 0
            elif emit:
                token = tok
                accepted = tl.minimum(n, i).to(tl.int64)
                active = n < 0
    tl.store(acc_ptr + b, accepted.to(tl.int64))
    tl.store(next_ptr + b, token.to(tl.int64))


def verify_split_triton(draft_tokens, target_logits, draft_probs, num_draft, temperature, top_k, top_p, min_p, seed,
                        accepted, next_token, *, max_top_k: int | None = None, ch: int = CH,
                        kc: int | None = None) -> None:
    """Same contract as kernels/verify.py ``verify_triton``; greedy rows never need the full pass.
    ``ch``, ``kc``: as in ``sample_split_triton``."""
    from fsgen_engine.kernels.verify import verify_triton

    B, K1, V = target_logits.shape
    kc = kc or candidates_per_split(max_top_k)
    S = triton.cdiv(V, ch)
    dev = target_logits.device
    rows = B * K1
    cand = torch.empty(rows * S * kc, dtype=torch.int64, device=dev)
    mz, sz, rs = (torch.empty(rows * S, dtype=torch.float32, device=dev) for _ in range(3))
    rc = torch.empty(rows * S, dtype=torch.int32, device=dev)
    _stage1[(rows, S)](target_logits, target_logits.stride(0), target_logits.stride(1), K1, V, temperature, top_k,
                       top_p, min_p, seed, cand, mz, sz, rs, rc, S, CH_=ch, KC=kc, num_warps=8)
    has_q = draft_probs is not None
    q = draft_probs if has_q else target_logits
    _verify_stage2[(B,)](cand, mz, sz, S, V, K1 - 1, draft_tokens, draft_tokens.stride(0), q,
                         q.stride(0) if has_q else 0, q.stride(1) if has_q else 0, num_draft, temperature, top_k,
                         top_p, min_p, seed, accepted, next_token, HAS_Q=has_q, SMAX=triton.next_power_of_2(S), KC=kc,
                         num_warps=4)
    verify_triton(draft_tokens, target_logits, draft_probs, num_draft, temperature, top_k, top_p, min_p, seed,
                  accepted, next_token, only_unfinished=True)


def sample_any_triton(logits, temperature, top_k, top_p, min_p, seed, out) -> None:
    """The Triton sampler for ``logits``' device: split rows on a GPU, one program per row under the
    interpreter (which runs programs one at a time, so fewer, wider programs are faster there)."""
    if logits.is_cuda:
        sample_split_triton(logits, temperature, top_k, top_p, min_p, seed, out)
    else:
        from fsgen_engine.kernels.sample import sample_triton

        sample_triton(logits, temperature, top_k, top_p, min_p, seed, out)


def verify_any_triton(draft_tokens, target_logits, draft_probs, num_draft, temperature, top_k, top_p, min_p, seed,
                      accepted, next_token) -> None:
    """The Triton verifier for the logits' device (see ``sample_any_triton``)."""
    args = (draft_tokens, target_logits, draft_probs, num_draft, temperature, top_k, top_p, min_p, seed, accepted,
            next_token)
    if target_logits.is_cuda:
        verify_split_triton(*args)
    else:
        from fsgen_engine.kernels.verify import verify_triton

        verify_triton(*args)
