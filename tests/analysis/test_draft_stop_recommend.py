"""analysis.uncertainty: the draft_stop threshold with the most expected tokens per unit cost."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fsgen_engine.analysis.samples import Sample
from fsgen_engine.analysis.uncertainty import recommend_draft_stop, simulate_draft_stop


def seq(ent, mism):
    return np.asarray(ent, float), np.asarray(mism, bool)


def test_simulation_by_hand():
    # drafter unsure exactly where the large model disagrees
    s = [seq([0.1, 5.0, 0.1, 5.0], [0, 1, 0, 1])]
    # gate entropy:1, K=4, draft cost 0.5: two rounds of (1 draft + the fired step) -> 2 tokens, cost 2 each
    assert simulate_draft_stop(s, "entropy", 1.0, 4, 0.5) == (4, 4.0, 2, 2, 2)
    # plain K=4: round 1 drafts 4 (1 accepted) cost 3; round 2 drafts the last 2 (1 accepted) cost 2
    assert simulate_draft_stop(s, None, None, 4, 0.5) == (4, 5.0, 2, 6, 2)
    # max_prob fires below the threshold; NaN fires
    s2 = [seq([0.9, float("nan"), 0.9], [0, 0, 0])]
    # round 1: 1 draft + the NaN step (cost 3), emits 2; round 2: the last token drafted (cost 2)
    assert simulate_draft_stop(s2, "max_prob", 0.5, 3, 1.0) == (3, 5.0, 2, 2, 2)
    # a fire on the first draft backs off: 1 round, then 2 rounds of plain large steps (cost 1 each)
    s3 = [seq([5.0, 5.0, 5.0, 0.1], [0, 0, 0, 0])]
    assert simulate_draft_stop(s3, "entropy", 1.0, 2, 0.5) == (4, 5.0, 0, 0, 4)


def sample(ent, mism):
    ent, mism = np.asarray(ent, float), np.asarray(mism, bool)
    return Sample(total_tokens=len(ent), large_calls=len(ent), mismatches=int(mism.sum()), positions=None,
                  entropy=ent, max_prob=np.exp(-ent), margin=np.exp(-ent) / 2, mismatch=mism)


def synthetic(rng, n=400):
    ent = rng.uniform(0, 3, n)
    mism = rng.uniform(size=n) < np.where(ent > 2.0, 0.9, 0.05)   # unsure -> mostly wrong
    return [sample(ent, mism)]


def test_recommends_a_gate_that_beats_fixed_k():
    rec = recommend_draft_stop(synthetic(np.random.default_rng(0)), k=6, cost_ratio=0.3)
    assert rec.rule is not None and rec.tokens_per_cost > rec.fixed_k_tokens_per_cost > 0
    assert rec.tokens_per_cost > 1.0 and "draft_stop=" in rec.line()
    stat, _, t = rec.rule.partition(":")
    assert stat in ("entropy", "max_prob", "margin") and float(t) == float(t)
    # the table holds the search: the best row is the recommendation
    assert max(r[2] for r in rec.table) == pytest.approx(rec.tokens_per_cost)


def test_expensive_drafts_say_use_large():
    rec = recommend_draft_stop(synthetic(np.random.default_rng(1)), k=4, cost_ratio=3.0)
    assert rec.tokens_per_cost <= 1.0 and "use method=large" in rec.line()


@pytest.mark.parametrize("k,r,match", [(0, 0.5, "num_draft_tokens=0"), (4, 0.0, "cost ratio 0.0")])
def test_bad_arguments(k, r, match):
    with pytest.raises(ValueError, match=match):
        recommend_draft_stop(synthetic(np.random.default_rng(0)), k=k, cost_ratio=r)


def test_cli_prints_the_recommendation(tmp_path, capsys):
    from fsgen_engine.cli import main
    from fsgen_engine.outputs import GenerationOutput, GenerationStats, Trace, TraceStep

    rng = np.random.default_rng(2)
    path = tmp_path / "t.jsonl"
    with open(path, "w") as f:
        for _ in range(3):
            tr = Trace()
            for i, e in enumerate(rng.uniform(0, 3, 60)):
                bad = rng.uniform() < (0.9 if e > 2 else 0.05)
                tr.append(TraceStep(position=i, small_entropy=float(e), small_max_prob=float(np.exp(-e)),
                                    small_margin=float(np.exp(-e) / 2), routed=True, token=5, small_argmax=6 if bad else 5,
                                    large_argmax=5, source="large"))
            out = GenerationOutput([5] * 60, "", "length", GenerationStats(), tr, method="oracle", router="always")
            f.write(json.dumps(out.to_dict()) + "\n")
    assert main(["analyze", "uncertainty", str(path), "--draft-cost", "0.3", "--num-draft", "6",
                 "--out", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert "draft_stop: use draft_stop=" in text
    assert (tmp_path / "o" / "draft_stop.md").exists()
