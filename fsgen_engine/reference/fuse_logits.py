"""Reference (plain torch) for ops.fuse_logits: the definition the kernels are tested against.

Every method is the general form ``w_l*large + w_s*small + w_f*small_ft`` over the first
``V' = min(vocab sizes)`` columns, then (for masked methods) set to ``-inf`` where
``large < log(alpha) + max(large[:, :V'])``. A zero weight drops its input entirely (so a ``-inf``
there does not turn into ``0 * -inf = NaN``). NaN entries of ``large`` are ignored by the row max
and propagate to their own output position only.
"""
from __future__ import annotations

import math

import torch


def fuse_logits_reference(large: torch.Tensor, small: torch.Tensor, small_ft: torch.Tensor | None,
                          w_l: float, w_s: float, w_f: float, log_alpha: float) -> torch.Tensor:
    """``[B, V']`` fused logits (float64 if any input is float64, else float32).

    ``log_alpha = -inf`` disables the plausibility mask (proxy tuning)."""
    inputs = [large, small] + ([small_ft] if small_ft is not None else [])
    work = torch.float64 if any(t.dtype == torch.float64 for t in inputs) else torch.float32
    v = min(t.shape[-1] for t in inputs)
    l_ = large[:, :v].to(work)
    out = torch.zeros_like(l_)
    for w, t in ((w_l, large), (w_s, small), (w_f, small_ft)):
        if t is not None and w != 0.0:
            out = out + w * t[:, :v].to(work)
    if log_alpha != float("-inf"):
        m = torch.where(torch.isnan(l_), torch.full_like(l_, float("-inf")), l_).amax(dim=-1, keepdim=True)
        out = torch.where(l_ < m + log_alpha, torch.full_like(out, float("-inf")), out)
    return out


def preset_weights(method: str, alpha: float, beta: float | None, weights) -> tuple[float, float, float, float]:
    """Map a method name and its parameters to ``(w_l, w_s, w_f, log_alpha)``."""
    if method == "contrastive":  # FS-GEN: small + beta*(large - small)
        return beta, 1.0 - beta, 0.0, math.log(alpha)
    if method == "contrastive_obrien":  # O'Brien & Lewis: (1+beta)*large - beta*small
        return 1.0 + beta, -beta, 0.0, math.log(alpha)
    if method == "proxy":  # large + alpha*(small_ft - small), no mask
        return 1.0, -alpha, alpha, float("-inf")
    if method == "weighted":
        w = tuple(float(x) for x in weights)
        return w[0], w[1], (w[2] if len(w) == 3 else 0.0), math.log(alpha)
    raise ValueError(f"unknown method {method!r}")
