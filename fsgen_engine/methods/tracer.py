"""The trace of a generation, built from the methods' step results.

A method's ``step`` returns one ``StepResult`` per row (methods/base.py); ``Tracer.record`` turns each
into the row's statistics and ``TraceStep`` entries and appends the tokens with ``Row.emit`` (which
applies the stop rules). Conventions the methods rely on: a position without a System-1
distribution has NaN statistics, small argmax -1 and no top-K; a model that did not run has argmax
-1; every source but ``"small"`` is routed; a BiLD rollback token keeps the System-1 data of the step
it replaces. Top-K probabilities are rounded to 6 decimals.
"""
from __future__ import annotations

import math

import numpy as np

from fsgen_engine.outputs import TraceStep

NO_STATS = (math.nan, math.nan, math.nan, -1)   # entropy, max_prob, margin, argmax: System 1 did not run
NO_TOPK = (None, None)


def _topk_at(pair: tuple | None, j: int) -> tuple:
    """``(probs, ids)`` lists of position ``j`` of a ``StepResult`` top-K pair, or ``NO_TOPK``."""
    if pair is None or j >= len(pair[0]):
        return NO_TOPK
    probs, ids = pair
    return np.round(probs[j], 6).tolist(), ids[j].astype(np.int64).tolist()


class Tracer:
    """Applies step results to rows (``rules``: the generate call's ``StopRules``)."""

    def __init__(self, rules):
        self.rules = rules

    def record(self, rows: list, results: list) -> None:
        for r, res in zip(rows, results):
            st = r.stats
            st.large_calls += res.large_calls
            st.mismatches += res.mismatches
            st.draft_tokens += res.drafted
            st.accepted_draft_tokens += res.accepted
            st.wasted_draft_tokens += res.wasted
            if res.draft_stop is not None:
                st.draft_stops += res.draft_stop == "rule"
                r.trace.add_round(res.drafted, res.draft_stop, res.accepted)
            replaced = None
            if res.rollback is not None:
                replaced = r.trace.step(res.rollback)
                r.cut(res.rollback)
            steps = [self.step(res, j, replaced if j == 0 else None) for j in range(len(res.tokens))]
            r.emit(res.tokens, steps, self.rules)

    @staticmethod
    def step(res, j: int, replaced: TraceStep | None = None) -> TraceStep:
        """The ``TraceStep`` of token ``j`` of ``res`` (position set by ``Row.emit``)."""
        if replaced is not None:
            stats = (replaced.small_entropy, replaced.small_max_prob, replaced.small_margin, replaced.small_argmax)
            small_topk = (replaced.small_topk_probs, replaced.small_topk_ids)
        elif res.small is not None and j < len(res.small):
            stats, small_topk = res.small[j], _topk_at(res.small_topk, j)
        else:
            stats, small_topk = NO_STATS, NO_TOPK
        lam = res.large_argmax[j] if res.large_argmax is not None and j < len(res.large_argmax) else -1
        large_topk = _topk_at(res.large_topk, j)
        source = res.source[j]
        return TraceStep(position=0, small_entropy=float(stats[0]), small_max_prob=float(stats[1]),
                         small_margin=float(stats[2]), routed=source != "small", token=int(res.tokens[j]),
                         small_argmax=int(stats[3]), large_argmax=int(lam), source=source,
                         small_topk_probs=small_topk[0], small_topk_ids=small_topk[1],
                         large_topk_probs=large_topk[0], large_topk_ids=large_topk[1])
