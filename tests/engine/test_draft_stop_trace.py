"""Per-round speculative trace (Trace.rounds) and the draft_stop counts: tracer and file round trip."""
from __future__ import annotations

import numpy as np

from fsgen_engine.methods.base import StepResult
from fsgen_engine.methods.tracer import Tracer
from fsgen_engine.outputs import GenerationOutput, GenerationStats, Trace
from fsgen_engine.runtime.rows import Row, StopRules


def test_rounds_and_counts_recorded():
    r = Row(index=0, seq_id=1, prompt=[1, 2], max_new=10)
    rules = StopRules(None, [], None, False)
    st = np.array([[0.1, 0.9, 0.8, 7], [2.5, 0.3, 0.1, 4]])
    Tracer(rules).record([r], [StepResult(tokens=[7, 9], source=["draft", "large"], small=st, large_calls=1,
                                          drafted=1, accepted=1, wasted=1, draft_stop="rule")])
    Tracer(rules).record([r], [StepResult(tokens=[3], source=["large"], small=st[:1], large_calls=1, mismatches=1,
                                          drafted=3, accepted=0, wasted=3, draft_stop="k")])
    assert r.trace.rounds == {"drafted": [1, 3], "stop": ["rule", "k"], "accepted": [1, 0]}
    s = r.stats
    assert (s.draft_stops, s.wasted_draft_tokens, s.draft_tokens, s.accepted_draft_tokens) == (1, 4, 4, 1)
    # the large token of a rule-stopped round carries the statistics the rule fired on
    assert r.trace.step(1).small_entropy == 2.5
    out = GenerationOutput(r.generated, "", "length", s, r.trace)
    back = GenerationOutput.from_dict(out.to_dict())
    assert back.trace.rounds == r.trace.rounds and back.stats == s


def test_traces_without_rounds_load_and_stay_small():
    t = Trace()
    assert "rounds" not in t.to_dict() and Trace.from_dict(t.to_dict()).rounds is None
    old = GenerationOutput([], "", "length", GenerationStats(), t).to_dict()
    del old["stats"]["draft_stops"], old["stats"]["wasted_draft_tokens"]   # a file from before the gate
    assert GenerationOutput.from_dict(old).stats.wasted_draft_tokens == 0
