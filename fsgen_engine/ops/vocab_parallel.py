"""ops.vocab_parallel: token_stats and greedy verification over vocabulary-parallel logits.

With a vocabulary-parallel LM head each tensor-parallel rank r holds the logits of one contiguous
vocabulary shard ``[vocab_offset_r, vocab_offset_r + V_r)`` (shards may be uneven; every shard has
at least one column, and the shards together cover ``[0, V)``). Instead of gathering ``B x V``
logits, each rank reduces its shard to a few numbers per row, the ranks all-gather those
(``[R, B, K]``), and the merge gives what the unsharded op gives on the full rows. This module is
plain torch (no ``torch.distributed``): the caller does the all-gather.

token_stats (``K = PARTIAL_WIDTH = 5``, float64 so that every global index below 2**53 is exact and
the merge adds no rounding of its own; 40 bytes per row and rank)::

    partial = token_stats_partial(shard, offset)          # [B, 5] float64, on shard.device
    stats = merge_token_stats(torch.stack(gathered))      # [R, B, 5] -> TokenStats of the full rows

Columns of a partial row (``PARTIAL_FIELDS``): ``top1`` the shard's largest logit, exactly (read
back from the shard at its argmax), ``top2`` the second largest (ties count twice, as ``topk``),
``logsumexp`` of the shard, ``entropy`` of the shard's own softmax, ``argmax`` the global index
(``vocab_offset`` + the shard's argmax; the first NaN on a NaN row). The special rows are encoded
without extra flag columns: ``logsumexp`` is NaN iff the shard row has a NaN, ``top1`` is ``+inf``
iff it has a ``+inf`` (and no NaN), ``logsumexp`` is ``-inf`` iff it is all ``-inf``.

The partial is built on the fast ``ops.token_stats`` of the shard (one pass, any backend) plus one
``[B]`` gather, not a new kernel: ``top1`` is the exact logit at the argmax; ``logsumexp`` is
recomputed in float64 as ``top1 - log(max_prob)`` (as precise as the kernel's float32 ``1/sum``,
and unlike the kernel's float32 ``logsumexp`` its error does not grow with the logit magnitude);
``top2 = top1 + log(1 - margin / max_prob)`` because ``margin = max_prob * (1 - exp(top2 - top1))``.
That last form cancels when ``top2`` is far below ``top1``, but its absolute error in
``exp(top2 - top1)`` stays at the float32 rounding of the kernel's ratio (~1e-7), so the merged
margin keeps an absolute error of about ``1e-7 * max_prob`` -- the same as the unsharded kernel's
own float32 ``1 - exp(...)`` -- and near-ties (where relative precision matters) do not cancel.
Entropy is merged with the grouping rule ``H = sum_r w_r H_r - sum_r w_r log w_r`` with
``w_r = exp(lse_r - lse)``: a sum of non-negative terms, no cancellation.

Greedy verification (the ``ops.sample`` / ``ops.verify`` greedy argmax: NaN never chosen, ties
-> lowest index, a row of all ``-inf``/NaN -> token 0)::

    part = argmax_partial(shard, offset)        # [B, K+1, V_r] -> [B, K+1, 2] float64 (max, index)
    arg = merge_argmax(torch.stack(gathered))   # [R, B, K+1, 2] -> [B, K+1] int64
    num_accepted, next_token = greedy_verify_sharded(draft_tokens, arg, num_draft)

Note the two argmax conventions differ on NaN rows, as the unsharded ops do: ``token_stats``
points at the first NaN, greedy sampling/verification ignores NaN.
"""
from __future__ import annotations

import math
import numbers

import torch

from fsgen_engine.ops._validate import (FLOAT_DTYPES, INDEX_DTYPES, check_last_dim_contiguous, check_nonempty,
                                        check_tensor)
from fsgen_engine.ops.token_stats import TokenStats, token_stats

PARTIAL_FIELDS = ("top1", "top2", "logsumexp", "entropy", "argmax")
PARTIAL_WIDTH = len(PARTIAL_FIELDS)
_INF = math.inf


def _check_offset(op: str, vocab_offset) -> int:
    if isinstance(vocab_offset, bool) or not isinstance(vocab_offset, numbers.Integral) or vocab_offset < 0:
        raise ValueError(f"{op}: vocab_offset={vocab_offset!r} must be a non-negative int: the global index of the "
                         f"shard's first column (rank r of a ceil-div split: r * ceil(V / R))")
    return int(vocab_offset)


def token_stats_partial(logits_shard: torch.Tensor, vocab_offset: int, *, backend: str = "auto") -> torch.Tensor:
    """Per-shard partials of ``ops.token_stats`` for ``logits_shard [B, V_r]``.

    logits_shard: float32/float16/bfloat16, ``V_r >= 1``, stride 1 along V_r (any row stride).
    vocab_offset: global vocabulary index of the shard's column 0. backend: as ``ops.token_stats``.
    Returns ``[B, PARTIAL_WIDTH]`` float64 (columns ``PARTIAL_FIELDS``, see the module docstring),
    to be all-gathered across ranks and passed to :func:`merge_token_stats`.
    """
    name = "token_stats_partial"
    check_tensor(name, "logits_shard", logits_shard, ndim=2, dtypes=FLOAT_DTYPES)
    check_nonempty(name, "logits_shard", logits_shard, 1)
    check_last_dim_contiguous(name, "logits_shard", logits_shard)
    offset = _check_offset(name, vocab_offset)
    s = token_stats(logits_shard, backend=backend)
    f64 = torch.float64
    top1 = logits_shard.gather(1, s.argmax[:, None])[:, 0].to(f64)  # exact; NaN on a NaN row
    lse_k = s.logsumexp.to(f64)
    finite = torch.isfinite(lse_k)  # finite top1, no NaN, no +inf
    max_prob = s.max_prob.to(f64)
    lse = torch.where(finite, top1 - torch.log(max_prob), lse_k)
    ratio = (1.0 - s.margin.to(f64) / max_prob).clamp(0.0, 1.0)  # exp(top2 - top1)
    top2 = torch.where(finite, top1 + torch.log(ratio), top1)
    # An all -inf shard in a finite global row gets weight 0 in the merge: its NaN entropy must not leak.
    entropy = torch.where(finite, s.entropy.to(f64), torch.zeros_like(lse))
    argmax = (s.argmax + offset).to(f64)
    return torch.stack([top1, top2, lse, entropy, argmax], dim=1)


def merge_token_stats(partials: torch.Tensor) -> TokenStats:
    """``ops.token_stats`` of the full rows from the all-gathered partials ``[R, B, PARTIAL_WIDTH]``
    float64 (one :func:`token_stats_partial` per shard, any order). Returns a :class:`TokenStats` of
    ``[B]`` tensors on ``partials.device``: float32 entropy / max_prob / margin / logsumexp and int64
    argmax, with the unsharded op's special rows (first NaN, first ``+inf``, all ``-inf`` -> 0).
    """
    name = "merge_token_stats"
    check_tensor(name, "partials", partials, ndim=3, dtypes=(torch.float64,))
    if partials.shape[0] == 0 or partials.shape[2] != PARTIAL_WIDTH:
        raise ValueError(f"{name}: partials has shape {tuple(partials.shape)}; it must be [R, B, {PARTIAL_WIDTH}] "
                         f"with R >= 1: stack the token_stats_partial output of every rank along dim 0")
    top1, top2, lse_r, ent_r, idx = partials.unbind(-1)  # each [R, B]
    nan_r = torch.isnan(lse_r)
    row_nan = nan_r.any(dim=0)
    neg_inf = torch.full_like(top1, -_INF)
    pos_inf = torch.full_like(top1, _INF)
    top1 = torch.where(nan_r, neg_inf, top1)  # NaN shards take no part in the stats (row is NaN anyway)
    m = top1.amax(dim=0)
    # Lowest global index among the shards holding the maximum (shards are contiguous, so the lowest
    # such shard index is the lowest global index); on a NaN row the lowest first-NaN index.
    max_idx = torch.where(top1 == m, idx, pos_inf).amin(dim=0)
    nan_idx = torch.where(nan_r, idx, pos_inf).amin(dim=0)
    argmax = torch.where(row_nan, nan_idx, max_idx).to(torch.int64)

    finite_m = torch.isfinite(m)
    shift = torch.where(finite_m, m, torch.zeros_like(m))
    w = torch.exp(torch.where(nan_r, neg_inf, lse_r) - shift)  # [R, B]; 0 for all -inf shards
    total = w.sum(dim=0)
    lse = shift + torch.log(total)
    w = w / total
    # Grouping rule: H = sum_r w_r (H_r + lse - lse_r); every term >= 0.
    gap = (lse - lse_r).clamp_min(0.0)
    entropy = torch.where(w > 0, w * (ent_r + gap), torch.zeros_like(w)).sum(dim=0).clamp_min(0.0)
    max_prob = torch.exp(m - lse)
    # The global top-2 is the second largest of the union of every shard's top-2.
    both = torch.cat([top1, torch.where(nan_r, neg_inf, top2)], dim=0)
    second = torch.topk(both, k=2, dim=0).values[1]
    margin = max_prob * -torch.expm1(second - shift)

    undefined = row_nan | ~finite_m
    nan = torch.full_like(m, math.nan)
    f32 = torch.float32
    return TokenStats(entropy=torch.where(undefined, nan, entropy).to(f32),
                      max_prob=torch.where(undefined, nan, max_prob).to(f32),
                      margin=torch.where(undefined, nan, margin).to(f32),
                      argmax=argmax,
                      logsumexp=torch.where(row_nan, nan, torch.where(finite_m, lse, m)).to(f32))


def argmax_partial(logits_shard: torch.Tensor, vocab_offset: int) -> torch.Tensor:
    """Greedy-argmax partial of ``logits_shard [..., V_r]`` (e.g. ``[B, K+1, V_r]`` for verify).

    float32/float16/bfloat16, ``V_r >= 1``. NaN is treated as ``-inf`` (never chosen, as in
    ``ops.sample``/``ops.verify``). Returns ``[..., 2]`` float64: the shard's largest logit and its
    global index (``vocab_offset`` + lowest local index among equal maxima; 0 + offset on a row of
    all ``-inf``/NaN). One pass makes a copy with NaN as ``-inf``, one ``max`` pass reads it; no host
    sync.
    """
    name = "argmax_partial"
    check_tensor(name, "logits_shard", logits_shard, ndim=(2, 3), dtypes=FLOAT_DTYPES)
    check_nonempty(name, "logits_shard", logits_shard, -1)
    offset = _check_offset(name, vocab_offset)
    # NaN as -inf on a copy, then one max (first index among equal maxima): no host sync, where checking
    # for NaN rows first would cost one on CUDA in every tensor-parallel step
    clean = torch.nan_to_num(logits_shard, nan=-_INF, posinf=_INF, neginf=-_INF)
    vals, idx = clean.max(dim=-1)
    return torch.stack([vals.to(torch.float64), (idx + offset).to(torch.float64)], dim=-1)


def merge_argmax(partials: torch.Tensor) -> torch.Tensor:
    """Global greedy argmax from the all-gathered :func:`argmax_partial` outputs ``[R, ..., 2]`` float64:
    int64 ``[...]``, the lowest global index among the shards holding the maximum (token 0 on a row of
    all ``-inf``/NaN, whose every shard reports its first column)."""
    name = "merge_argmax"
    check_tensor(name, "partials", partials, ndim=(3, 4), dtypes=(torch.float64,))
    if partials.shape[0] == 0 or partials.shape[-1] != 2:
        raise ValueError(f"{name}: partials has shape {tuple(partials.shape)}; it must be [R, ..., 2] with R >= 1: "
                         f"stack the argmax_partial output of every rank along dim 0")
    vals, idx = partials.unbind(-1)
    vals = torch.where(torch.isnan(vals), torch.full_like(vals, -_INF), vals)
    best = vals.amax(dim=0)
    return torch.where(vals == best, idx, torch.full_like(idx, _INF)).amin(dim=0).to(torch.int64)


def greedy_verify_sharded(draft_tokens: torch.Tensor, merged_argmax: torch.Tensor,
                          num_draft: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy speculative verification from the target's argmax at each position.

    draft_tokens ``[B, K]`` int64; merged_argmax ``[B, K+1]`` int64 (:func:`merge_argmax` of the
    ``[B, K+1, V_r]`` shards); num_draft ``[B]`` int32/int64 in ``[0, K]`` (default K). Returns
    ``(num_accepted [B] int64, next_token [B] int64)``, equal to ``ops.verify(draft_tokens,
    full_logits, num_draft=num_draft, temperature=0)``: drafts are accepted while they equal the
    target argmax; next_token is the argmax at the first disagreement (or at num_draft[b]). A draft
    token outside the vocabulary never equals an argmax, so it is rejected (ops.verify's hot path).
    """
    name = "greedy_verify_sharded"
    check_tensor(name, "draft_tokens", draft_tokens, ndim=2, dtypes=(torch.int64,))
    check_tensor(name, "merged_argmax", merged_argmax, ndim=2, dtypes=(torch.int64,), device=draft_tokens.device)
    b, k = draft_tokens.shape
    if tuple(merged_argmax.shape) != (b, k + 1):
        raise ValueError(f"{name}: merged_argmax has shape {tuple(merged_argmax.shape)} but draft_tokens is "
                         f"[{b}, {k}]; it must be [B, K+1] = [{b}, {k + 1}] (one more position for the bonus token)")
    if num_draft is None:
        num_draft = torch.full((b,), k, dtype=torch.int64, device=draft_tokens.device)
    else:
        check_tensor(name, "num_draft", num_draft, ndim=1, dtypes=INDEX_DTYPES, device=draft_tokens.device)
        if num_draft.shape[0] != b:
            raise ValueError(f"{name}: num_draft has shape {tuple(num_draft.shape)}; it must be [B] = [{b}]")
        bad = (num_draft < 0) | (num_draft > k)
        if b > 0 and bool(bad.any()):
            raise ValueError(f"{name}: num_draft={num_draft[bad][0].item()} is out of range [0, K={k}]; "
                             f"clamp it to the number of drafted tokens")
        num_draft = num_draft.to(torch.int64)
    pos = torch.arange(k, device=draft_tokens.device)
    rejected = (draft_tokens != merged_argmax[:, :k]) & (pos[None, :] < num_draft[:, None])
    # first rejection (argmax of a bool row is its first True), or num_draft when there is none
    first = torch.where(rejected.any(dim=1), rejected.to(torch.uint8).argmax(dim=1), num_draft) if k else num_draft
    num_accepted = torch.minimum(first, num_draft)
    next_token = merged_argmax.gather(1, num_accepted[:, None])[:, 0]
    return num_accepted, next_token
