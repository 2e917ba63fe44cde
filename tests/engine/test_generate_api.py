"""generate(prompts, SamplingParams(...), method=..., options=MethodOptions(...)): the current API, the
deprecated flat keywords (same results, one DeprecationWarning), and SamplingParams' one validator."""
from __future__ import annotations

import pytest

from conftest import PROMPTS
from fsgen_engine import MethodOptions, SamplingParams
from fsgen_engine.generate_args import generate_kwargs


def _ids(outs):
    return [o.token_ids for o in outs]


@pytest.mark.parametrize("flat", [
    dict(method="speculative", num_draft_tokens=3, temperature=0.9, top_k=5, top_p=0.9, min_p=0.05, seed=11),
    dict(method="contrastive", router="max_prob:0.6", alpha=0.2, beta=0.4, temperature=0.7, seed=3),
    dict(method="bild", bild_rollback=2.0, bild_max_small=3),
])
def test_deprecated_keywords_equal_new_api(toy_engine, flat):
    new = toy_engine.generate(PROMPTS, max_new_tokens=6, progress=False, ignore_eos=True, **generate_kwargs(**flat))
    with pytest.warns(DeprecationWarning, match=r"generate\(.*is deprecated"):
        old = toy_engine.generate(PROMPTS, max_new_tokens=6, progress=False, ignore_eos=True, **flat)
    assert _ids(old) == _ids(new)
    assert [o.meta for o in old] == [o.meta for o in new]


def test_generate_kwargs_splits_flat_keywords():
    kw = generate_kwargs(method="proxy", temperature=0.5, seed=2, alpha=0.3, stop=["\n"])
    assert kw == dict(method="proxy", stop=["\n"], sampling=SamplingParams(temperature=0.5, seed=2),
                      options=MethodOptions(alpha=0.3))
    assert generate_kwargs(method="large") == dict(method="large")


def test_argument_errors_change_nothing(toy_engine):
    pages, seq = toy_engine.kv.num_free_pages, toy_engine._next_seq
    with pytest.raises(TypeError, match="unexpected keyword argument 'temprature'"):
        toy_engine.generate(PROMPTS, method="large", temprature=0.5)
    with pytest.raises(ValueError, match="not both"), pytest.warns(DeprecationWarning):
        toy_engine.generate(PROMPTS, SamplingParams(temperature=0.5), method="large", temperature=0.5)
    with pytest.raises(ValueError, match="sampling=.*SamplingParams"):
        toy_engine.generate(PROMPTS, {"temperature": 0.5}, method="large")
    with pytest.raises(ValueError, match="options=.*MethodOptions"):
        toy_engine.generate(PROMPTS, method="speculative", options={"num_draft_tokens": 2})
    with pytest.raises(ValueError, match="num_draft_tokens=0"):
        toy_engine.generate(PROMPTS, method="speculative", options=MethodOptions(num_draft_tokens=0))
    assert toy_engine.kv.num_free_pages == pages and toy_engine._next_seq == seq


@pytest.mark.parametrize("kw, match", [
    (dict(temperature=-1.0), r"temperature=-1.0 must be in \[0.0, inf\]; use 0 for greedy"),
    (dict(temperature=float("inf")), "temperature=inf"),
    (dict(temperature="hot"), "temperature='hot' must be a number"),
    (dict(top_k=-2), r"top_k=-2 must be an integer in \[0, inf\]"),
    (dict(top_k=2.5), "top_k=2.5 must be an integer"),
    (dict(top_k=True), "top_k=True must be a number"),
    (dict(top_p=0.0), r"top_p=0.0 must be in \(0.0, 1.0\]"),
    (dict(top_p=1.01), "top_p=1.01"),
    (dict(min_p=-0.1), "min_p=-0.1"),
    (dict(min_p=float("nan")), "min_p=nan"),
    (dict(seed=1.5), "seed=1.5 must be an integer or None"),
])
def test_sampling_params_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        SamplingParams(**kw)


def test_sampling_params_normalised():
    p = SamplingParams(temperature=1, top_k=4.0, top_p=1, min_p=0)
    assert (p.temperature, p.top_k, p.top_p, p.min_p) == (1.0, 4, 1.0, 0.0)
    assert type(p.top_k) is int and type(p.temperature) is float
    assert SamplingParams().greedy and not p.greedy


def test_ops_and_engine_share_the_validator():
    """ops.sample and SamplingParams reject (and word) the same bad values."""
    import torch

    from fsgen_engine import ops

    for name, bad in (("temperature", -0.5), ("top_k", -1), ("top_p", 1.5), ("min_p", 2.0)):
        with pytest.raises(ValueError) as a:
            SamplingParams(**{name: bad})
        with pytest.raises(ValueError) as b:
            ops.sample(torch.zeros(2, 5), **{name: bad})
        assert str(b.value) == f"sample: {a.value}"


def test_page_size_from_environment(hf_models, tok, monkeypatch):
    """FSGEN_PAGE_SIZE sets the page size when Engine(page_size=None); an explicit one wins."""
    from fsgen_engine.engine import Engine
    from toy import RecomputeModel

    large, small = RecomputeModel(hf_models["large"], tok), RecomputeModel(hf_models["small"], tok)
    monkeypatch.setenv("FSGEN_PAGE_SIZE", "8")
    assert Engine(large, small, num_pages=16, device="cpu").kv.page_size == 8
    assert Engine(large, small, num_pages=16, page_size=4, device="cpu").kv.page_size == 4
    monkeypatch.setenv("FSGEN_PAGE_SIZE", "0")
    with pytest.raises(ValueError, match="FSGEN_PAGE_SIZE=0"):
        Engine(large, small, num_pages=16, device="cpu")
