"""generate(n=...): several samples per prompt share the prompt's KV (one prefill, forked pages)."""
from __future__ import annotations

import pytest
import torch

from fsgen_engine.core import SamplingParams
from fsgen_engine.engine import Engine
from fsgen_engine.generate_args import generate_kwargs
from fsgen_engine.models import from_hf_model
from tests.models._paged import PagedSeqs
from tests.models.conftest import make_hf

PROMPTS = [[1, 5, 6, 7, 8, 9], [1, 9, 10, 11, 12, 13, 14, 15, 16, 17], [1, 20]]
METHODS = [dict(method="large"), dict(method="speculative", num_draft_tokens=3),
           dict(method="oracle", router="max_prob:0.5"), dict(method="bild"), dict(method="contrastive")]


@pytest.fixture(scope="module")
def engine():
    large = from_hf_model(make_hf("llama", layers=3, seed=5))
    return Engine(large, "early_exit:2", device="cpu", num_pages=160, page_size=4, max_batch=8)


@pytest.mark.parametrize("kw", METHODS, ids=lambda k: k["method"])
def test_greedy_samples_equal_single_generation(engine, kw, monkeypatch):
    forks = []
    real_fork = engine.kv.fork
    monkeypatch.setattr(engine.kv, "fork", lambda a, b: (forks.append((a, b)), real_fork(a, b)))
    one = engine.generate(PROMPTS, max_new_tokens=7, ignore_eos=True, progress=False, **generate_kwargs(**kw))
    three = engine.generate(PROMPTS, n=3, max_new_tokens=7, ignore_eos=True, progress=False, **generate_kwargs(**kw))
    assert len(three) == 3 * len(PROMPTS)
    for i, o in enumerate(one):
        group = three[3 * i:3 * i + 3]
        assert [g.meta["sample"] for g in group] == [0, 1, 2]
        for g in group:   # the forked prompt KV gives exactly the unshared result
            assert g.token_ids == o.token_ids and g.prompt == o.prompt
            assert g.stats.large_calls == o.stats.large_calls and g.stats.mismatches == o.stats.mismatches
    # prompts longer than one token are prefilled once and forked to the two other samples
    assert len(forks) == 2 * sum(len(p) > 1 for p in PROMPTS)
    assert engine.kv.num_free_pages == engine.kv.num_pages
    engine.kv.check_invariants()


def test_sampled_first_tokens_follow_the_large_model(engine):
    """n samples of one prompt: the first tokens are draws from the large model's distribution."""
    from scipy.stats import chisquare

    prompt = [1, 30, 31, 32, 33]
    eng = Engine(engine.models["large"], "early_exit:1", device="cpu", num_pages=400, page_size=4, max_batch=200)
    outs = eng.generate([prompt], SamplingParams(temperature=1.0, top_k=8, seed=3), n=200, method="large",
                        max_new_tokens=1, ignore_eos=True, progress=False)
    first = torch.tensor([o.token_ids[0] for o in outs])
    z = PagedSeqs(eng.models["large"], num_pages=8, page_size=4).step({0: prompt})[0]
    top = torch.topk(z.double(), 8)
    p = torch.softmax(top.values, dim=-1)
    assert set(first.tolist()) <= set(top.indices.tolist())
    obs = torch.stack([(first == t).sum() for t in top.indices]).double()
    assert chisquare(obs.numpy(), (p * len(outs)).numpy()).pvalue > 1e-4   # false-failure rate 1e-4
    assert len(set(first.tolist())) > 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, 9])
def test_bad_n(engine, bad):
    with pytest.raises(ValueError, match=r"n=.*max_batch=8"):
        engine.generate(PROMPTS, n=bad, method="large", max_new_tokens=2, progress=False)
    assert engine.kv.num_free_pages == engine.kv.num_pages
