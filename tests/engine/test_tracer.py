"""methods/tracer.py: StepResults become stats, trace steps and emitted tokens (the methods' contract)."""
from __future__ import annotations

import math

import numpy as np

from fsgen_engine.methods.base import StepResult
from fsgen_engine.methods.tracer import Tracer
from fsgen_engine.runtime.rows import Row, StopRules


def _row(max_new=10):
    return Row(index=0, seq_id=1, prompt=[1, 2, 3], max_new=max_new)


def test_speculative_round_with_bonus_token():
    r = _row()
    small = np.array([[0.5, 0.9, 0.3, 7], [0.6, 0.8, 0.2, 8]])              # 2 draft positions
    probs, ids = np.array([[0.91234567, 0.05], [0.7, 0.2]]), np.array([[7, 4], [8, 1]])
    res = StepResult(tokens=[7, 8, 9], source=["draft", "draft", "large"], small=small,
                     large_argmax=np.array([7, 8, 9]), small_topk=(probs, ids), large_calls=1, drafted=2, accepted=2)
    Tracer(StopRules(None, [], None, False)).record([r], [res])
    assert r.generated == [7, 8, 9]
    s = [r.trace.step(i) for i in range(3)]
    assert [x.position for x in s] == [0, 1, 2] and all(x.routed for x in s)
    assert (s[0].small_entropy, s[0].small_argmax, s[0].large_argmax) == (0.5, 7, 7)
    assert s[0].small_topk_probs == [0.912346, 0.05] and s[0].small_topk_ids == [7, 4]
    # the bonus position has no System-1 distribution
    assert math.isnan(s[2].small_entropy) and s[2].small_argmax == -1 and s[2].small_topk_probs is None
    st = r.stats
    assert (st.large_calls, st.draft_tokens, st.accepted_draft_tokens, st.mismatches) == (1, 2, 2, 0)


def test_small_token_is_not_routed_and_large_only_has_nan_stats():
    a, b = _row(), _row()
    rules = StopRules(None, [], None, False)
    Tracer(rules).record([a, b], [StepResult(tokens=[5], source=["small"], small=np.array([[1.0, 0.4, 0.1, 5]])),
                                  StepResult(tokens=[6], source=["large"], large_argmax=np.array([6]), large_calls=1)])
    sa, sb = a.trace.step(0), b.trace.step(0)
    assert not sa.routed and sa.large_argmax == -1 and sa.small_max_prob == 0.4
    assert sb.routed and math.isnan(sb.small_entropy) and sb.small_argmax == -1 and sb.large_argmax == 6


def test_rollback_replaces_tokens_and_keeps_system1_data():
    r = _row()
    rules = StopRules(None, [], None, False)
    t = Tracer(rules)
    t.record([r], [StepResult(tokens=[10], source=["small"], small=np.array([[0.1, 0.2, 0.3, 10]]))])
    t.record([r], [StepResult(tokens=[11], source=["small"], small=np.array([[0.4, 0.5, 0.6, 11]]))])
    t.record([r], [StepResult(tokens=[20], source=["rollback"], large_argmax=np.array([20]), rollback=0,
                              large_calls=1, mismatches=1)])
    assert r.generated == [20] and len(r.trace) == 1
    s = r.trace.step(0)
    assert (s.token, s.source, s.routed, s.small_entropy, s.small_argmax, s.large_argmax) == \
        (20, "rollback", True, 0.1, 10, 20)
    assert (r.stats.large_calls, r.stats.mismatches) == (1, 1)


def test_stop_rules_keep_fewer_tokens():
    r = _row()
    res = StepResult(tokens=[4, 99, 5], source=["draft", "draft", "large"], small=np.zeros((2, 4)),
                     large_argmax=np.array([4, 99, 5]))
    Tracer(StopRules(None, [99], None, False)).record([r], [res])
    assert r.generated == [4, 99] and r.finish_reason == "eos" and len(r.trace) == 2
