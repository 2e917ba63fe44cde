"""The learned router's feature vector, in one place for training and inference.

Every trace (``fsgen_engine.outputs.TraceStep``) keeps three statistics of System 1's distribution per
token; its top-k probabilities only when generated with ``trace_topk=K``. The default feature set is
what every trace has:

=============  ==============================================================
``entropy``    H(p_s) in nats
``max_prob``   p_s(1st)
``margin``     p_s(1st) - p_s(2nd)
``top2_prob``  p_s(2nd) = max_prob - margin
=============  ==============================================================

``FEATURES_STATS`` names that spec. When traces also carry a ``small_topk_probs`` column (sorted
descending top-k probabilities per step: ``generate(..., trace_topk=K)``, ``fsgen generate/eval
--trace-topk K``), the spec ``topk:K`` = the K sorted probabilities followed by
the entropy (the FS-GEN SVM's input plus entropy) can be used instead. A saved router stores its
spec (``bundle["features"]``) so inference builds the same columns with :func:`features_for_spec`.
"""
from __future__ import annotations

import numpy as np

FEATURES_STATS = "stats4"
STATS_FEATURE_NAMES = ("entropy", "max_prob", "margin", "top2_prob")
TOPK_COLUMN = "small_topk_probs"


def features_from_stats(entropy, max_prob, margin) -> np.ndarray:
    """``[N]`` entropy (nats), max prob, margin -> ``[N, 4]`` float64 features (``STATS_FEATURE_NAMES``)."""
    e = np.asarray(entropy, dtype=np.float64).reshape(-1)
    p1 = np.asarray(max_prob, dtype=np.float64).reshape(-1)
    m = np.asarray(margin, dtype=np.float64).reshape(-1)
    if not (e.shape == p1.shape == m.shape):
        raise ValueError(f"entropy, max_prob and margin must have the same length, got {e.shape[0]}, "
                         f"{p1.shape[0]}, {m.shape[0]}")
    return np.stack([e, p1, m, p1 - m], axis=1)


def features_from_topk(topk_probs, entropy, k: int) -> np.ndarray:
    """``[N, >=k]`` sorted (descending) probabilities + ``[N]`` entropy -> ``[N, k + 1]`` float64.

    Rows shorter than ``k`` (tiny vocabularies) are padded with zeros."""
    rows = [list(r)[:k] + [0.0] * max(0, k - len(r)) for r in topk_probs]
    p = np.asarray(rows, dtype=np.float64).reshape(len(rows), k)
    e = np.asarray(entropy, dtype=np.float64).reshape(-1, 1)
    if e.shape[0] != p.shape[0]:
        raise ValueError(f"topk_probs has {p.shape[0]} rows but entropy has {e.shape[0]}")
    return np.concatenate([p, e], axis=1)


def parse_spec(spec: str) -> tuple[str, int]:
    """``"stats4"`` -> ("stats4", 0); ``"topk:10"`` -> ("topk", 10)."""
    if spec == FEATURES_STATS:
        return FEATURES_STATS, 0
    if spec.startswith("topk:"):
        try:
            k = int(spec.split(":", 1)[1])
        except ValueError:
            k = 0
        if k > 0:
            return "topk", k
    raise ValueError(f"feature spec {spec!r} is not known: use {FEATURES_STATS!r} or 'topk:K' (K > 0)")


def features_from_logits(logits, spec: str = FEATURES_STATS) -> np.ndarray:
    """System 1's last-position logits ``[B, V]`` (torch tensor) -> ``[B, F]`` features for ``spec``."""
    import torch

    kind, k = parse_spec(spec)
    x = logits.detach().to(torch.float64)
    logp = torch.log_softmax(x, dim=-1)
    p = logp.exp()
    ent = -(torch.where(p > 0, p * logp, torch.zeros_like(p))).sum(-1)
    top = torch.topk(p, k=min(max(k, 2), p.shape[-1]), dim=-1).values
    if kind == "topk":
        return features_from_topk(top[:, :k].cpu().numpy(), ent.cpu().numpy(), k)
    p1 = top[:, 0]
    p2 = top[:, 1] if top.shape[-1] > 1 else torch.zeros_like(p1)
    return features_from_stats(ent.cpu().numpy(), p1.cpu().numpy(), (p1 - p2).cpu().numpy())


def features_for_spec(spec: str, *, entropy, max_prob=None, margin=None, topk_probs=None) -> np.ndarray:
    """Build the feature matrix of ``spec`` from per-step columns (what traces hold)."""
    kind, k = parse_spec(spec)
    if kind == "topk":
        if topk_probs is None:
            raise ValueError(f"feature spec {spec!r} needs the {TOPK_COLUMN!r} trace column")
        return features_from_topk(topk_probs, entropy, k)
    return features_from_stats(entropy, max_prob, margin)
