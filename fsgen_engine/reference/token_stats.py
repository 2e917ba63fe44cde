"""Reference (plain torch) for ops.token_stats: the definition the kernels are tested against.

Computes in the input's precision when it is float64 (tests use that as ground truth) and in
float32 otherwise. Special rows (every backend follows the same rules):

* a row with a NaN: ``argmax`` = index of the first NaN (what ``torch.argmax`` does); ``entropy``,
  ``max_prob``, ``margin`` and ``logsumexp`` are NaN.
* else a row with ``+inf``: ``argmax`` = first ``+inf``; ``logsumexp`` = ``+inf``; the other
  three are NaN (the distribution is not defined).
* else a row of all ``-inf``: ``argmax`` = 0, ``logsumexp`` = ``-inf``, the other three NaN.
* ``-inf`` entries in an otherwise finite row are zero-probability tokens and are fine.
"""
from __future__ import annotations

import torch


def token_stats_reference(logits: torch.Tensor):
    """``logits [B, V]`` -> ``(entropy, max_prob, margin, argmax, logsumexp)``, each ``[B]``
    (float32, or float64 for float64 input; argmax int64)."""
    work = torch.float64 if logits.dtype == torch.float64 else torch.float32
    x = logits.to(work)
    nan = torch.isnan(x)
    row_nan = nan.any(dim=-1)
    xs = torch.where(nan, torch.full_like(x, float("-inf")), x)  # NaNs take no part in the stats
    m = xs.amax(dim=-1)
    finite_m = torch.isfinite(m)
    shift = torch.where(finite_m, m, torch.zeros_like(m)).unsqueeze(-1)
    d = xs - shift
    e = torch.exp(d)
    s0 = e.sum(dim=-1)
    s1 = torch.where(e > 0, e * d, torch.zeros_like(d)).sum(dim=-1)  # -inf tokens contribute 0, not NaN
    log_s0 = torch.log(s0)
    lse = m + log_s0
    max_prob = 1.0 / s0
    entropy = (log_s0 - s1 / s0).clamp_min(0.0)
    top2 = torch.topk(xs, k=min(2, xs.shape[-1]), dim=-1).values
    second = top2[:, 1] if xs.shape[-1] > 1 else torch.full_like(m, float("-inf"))
    margin = (1.0 - torch.exp(second - shift.squeeze(-1))) / s0
    argmax = torch.argmax(xs, dim=-1)  # lowest index among equal maxima
    argmax = torch.where(row_nan, nan.to(torch.uint8).argmax(dim=-1), argmax)

    undefined = row_nan | ~finite_m
    nan_val = torch.full_like(m, float("nan"))
    entropy = torch.where(undefined, nan_val, entropy)
    max_prob = torch.where(undefined, nan_val, max_prob)
    margin = torch.where(undefined, nan_val, margin)
    lse = torch.where(row_nan, nan_val, torch.where(finite_m, lse, m))
    return entropy, max_prob, margin, argmax.to(torch.int64), lse
