"""Synthetic traces with known answers, built without the engine."""
from __future__ import annotations

import numpy as np

from fsgen_engine.outputs import GenerationOutput, GenerationStats, Trace, TraceStep


def make_output(n_tokens: int, mismatch_at: set[int], *, routed_at: set[int] | None = None,
                entropy=None, max_prob=None, margin=None, meta: dict | None = None) -> GenerationOutput:
    """A trace of ``n_tokens`` steps; routed at ``routed_at`` (default every step); the emitted token
    differs from the small argmax exactly at ``mismatch_at`` (which must be routed)."""
    routed_at = set(range(n_tokens)) if routed_at is None else routed_at
    assert mismatch_at <= routed_at
    tr = Trace()
    for i in range(n_tokens):
        ent = entropy[i] if entropy is not None else 0.1
        mp = max_prob[i] if max_prob is not None else 0.9
        mg = margin[i] if margin is not None else 0.8
        mism = i in mismatch_at
        tr.append(TraceStep(position=i, small_entropy=float(ent), small_max_prob=float(mp), small_margin=float(mg),
                            routed=i in routed_at, token=100 + i + (1 if mism else 0), small_argmax=100 + i,
                            large_argmax=(100 + i + (1 if mism else 0)) if i in routed_at else -1,
                            source="large" if i in routed_at else "small"))
    stats = GenerationStats(total_tokens=n_tokens, large_calls=len(routed_at), mismatches=len(mismatch_at))
    return GenerationOutput(token_ids=list(tr.columns["token"]), text="x" * n_tokens, finish_reason="length",
                            stats=stats, trace=tr, prompt="p", method="oracle", router="always", meta=meta or {})


def separable_outputs(rng: np.random.Generator, n_samples: int = 6, n_tokens: int = 40):
    """Mismatch steps have high entropy / low max prob / low margin: every statistic separates perfectly."""
    outs = []
    for _ in range(n_samples):
        mism = set(int(i) for i in rng.choice(n_tokens, size=n_tokens // 5, replace=False))
        ent = [rng.uniform(2.0, 3.0) if i in mism else rng.uniform(0.0, 1.0) for i in range(n_tokens)]
        mp = [rng.uniform(0.1, 0.4) if i in mism else rng.uniform(0.6, 1.0) for i in range(n_tokens)]
        mg = [rng.uniform(0.0, 0.2) if i in mism else rng.uniform(0.3, 1.0) for i in range(n_tokens)]
        outs.append(make_output(n_tokens, mism, entropy=ent, max_prob=mp, margin=mg))
    return outs
