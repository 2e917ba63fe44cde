"""Stopping, batching in waves, learned router, bad input (errors before any state change), no page leak."""
import pytest
import torch

from conftest import PROMPTS
from fsgen_engine.generate_args import generate_kwargs


def gen(engine, prompts=PROMPTS, **kw):
    kw.setdefault("method", "large")
    kw.setdefault("max_new_tokens", 8)
    return engine.generate(prompts, progress=False, **generate_kwargs(**kw))


def full(engine):
    return engine.kv.num_free_pages == engine.kv.num_pages


def test_waves_more_prompts_than_max_batch(toy_engine):
    prompts = [PROMPTS[i % 4] + [50 + i] for i in range(19)]  # max_batch is 8
    for method in ("large", "speculative", "oracle"):
        outs = gen(toy_engine, prompts, method=method, router="max_prob:0.5", ignore_eos=True)
        single = [gen(toy_engine, [p], method="large", ignore_eos=True)[0].token_ids for p in prompts[:3]]
        assert [o.token_ids for o in outs[:3]] == single
        assert len(outs) == 19 and all(o.stats.total_tokens == 8 for o in outs)
        assert full(toy_engine)


def test_stop_token_string_and_eos(toy_engine, tok):
    base = gen(toy_engine, [PROMPTS[0]], ignore_eos=True, max_new_tokens=10)[0]
    t3 = base.token_ids[3]
    first = base.token_ids.index(t3)
    o = gen(toy_engine, [PROMPTS[0]], stop=[t3], max_new_tokens=10)[0]
    assert o.finish_reason == "stop" and o.token_ids == base.token_ids[:first + 1]
    # stop string: the text before it is kept, the string removed
    word = tok.decode([t3])
    o = gen(toy_engine, [PROMPTS[0]], stop=word, max_new_tokens=10, method="speculative")[0]
    assert o.finish_reason == "stop"
    text = tok.decode(base.token_ids, skip_special_tokens=True)
    assert word not in o.text and o.text == text[:text.find(word)]
    assert o.token_ids == base.token_ids[:first + 1]
    # eos (id 2): generation that reaches it stops, unless ignore_eos
    eng_eos = toy_engine.eos_ids
    assert 2 in eng_eos
    o = gen(toy_engine, [PROMPTS[0]], stop=[[base.token_ids[0], base.token_ids[1]]], max_new_tokens=10)[0]
    assert o.token_ids == base.token_ids[:2] and o.finish_reason == "stop"
    assert full(toy_engine)


def test_string_prompts_and_text(toy_engine, tok):
    o = gen(toy_engine, ["w5 w6 w7"], ignore_eos=True)[0]
    ids = tok.encode("w5 w6 w7")
    assert o.token_ids == gen(toy_engine, [ids], ignore_eos=True)[0].token_ids
    assert o.text == tok.decode(o.token_ids, skip_special_tokens=True)
    assert o.prompt == "w5 w6 w7"


def test_learned_router(toy_engine, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fsgen_engine.router_training import export_model, save_router
    from fsgen_engine.routers import parse_router

    rng = torch.Generator().manual_seed(0)
    x = torch.rand(200, 4, generator=rng).numpy()
    y = (x[:, 1] < 0.5).astype(int)  # fires when max prob is low
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    path = tmp_path / "r.json"
    save_router({"format": "fsgen-router/2", "kind": "logistic", "model": export_model(pipe), "features": "stats4",
                 "threshold": 0.5}, str(path))
    r = parse_router(f"learned:{path}")
    assert r.static is None
    outs = gen(toy_engine, method="oracle", router=f"learned:{path}", ignore_eos=True)
    assert all(o.stats.large_calls == sum(o.trace.columns["routed"]) for o in outs)
    assert full(toy_engine)


def test_router_parsing():
    from fsgen_engine.routers import parse_router

    assert parse_router("normal").static is True and parse_router("none").static is False
    assert parse_router("threshold").name == "max_prob:0.5"
    assert parse_router("delta_threshold").name == "margin:0.4"
    for bad in ("sometimes", "max_prob", "max_prob:abc", "max_prob:1.5", "entropy:-1", "always:3", "learned:"):
        with pytest.raises(ValueError, match="router"):
            parse_router(bad)


@pytest.mark.parametrize("kw,match", [
    (dict(method="nope"), "method="),
    (dict(method="oracle", router="bogus"), "valid routers"),
    (dict(method="oracle", router="max_prob:2"), "max_prob"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(temperature=-1.0), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_k=-2), "top_k"),
    (dict(min_p=1.5), "min_p"),
    (dict(method="speculative", num_draft_tokens=0), "num_draft_tokens"),
    (dict(method="contrastive", alpha=2.0), "alpha"),
    (dict(method="contrastive", preset="bad"), "preset"),
    (dict(method="oracle", target="proxy"), "target"),
    (dict(method="proxy", mismatch_reference="x"), "mismatch_reference"),
    (dict(stop=[""]), "empty"),
])
def test_bad_arguments(toy_engine, kw, match):
    pages, seq = toy_engine.kv.num_free_pages, toy_engine._next_seq
    with pytest.raises(ValueError, match=match):
        gen(toy_engine, **kw)
    assert toy_engine.kv.num_free_pages == pages and toy_engine._next_seq == seq and full(toy_engine)


def test_bad_prompts(toy_engine):
    for prompts, match in (([], "empty"), ([[]], "empty"), ([[1, 999]], "vocabulary"), ([1, 2, 3], "wrap"),
                           ([[1] * 300], "context"), ([3.5], "prompt")):
        with pytest.raises(ValueError, match=match):
            gen(toy_engine, prompts)
    assert full(toy_engine)


def test_proxy_needs_small_ft(hf_models, tok):
    from fsgen_engine.engine import Engine
    from toy import RecomputeModel

    eng = Engine(RecomputeModel(hf_models["large"], tok), RecomputeModel(hf_models["small"], tok), num_pages=64,
                 page_size=4)
    for kw in (dict(method="proxy"), dict(method="speculative", target="proxy")):
        with pytest.raises(ValueError, match="small_ft"):
            gen(eng, **kw)
    assert full(eng)


def test_tokenizer_mismatch(hf_models, tok):
    from fsgen_engine.engine import Engine
    from toy import RecomputeModel, make_tokenizer

    other = make_tokenizer()
    other.add_tokens(["zzz"])  # id 256: beyond the models' 256-row vocab -> fine
    Engine(RecomputeModel(hf_models["large"], tok, "A"), RecomputeModel(hf_models["small"], other, "B"),
           num_pages=16, page_size=4)
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast
    vocab = {f"x{i}": i for i in range(256)}
    bad = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="x0")))
    with pytest.raises(ValueError, match="tokenizer mismatch.*A.*B"):
        Engine(RecomputeModel(hf_models["large"], tok, "A"), RecomputeModel(hf_models["small"], bad, "B"),
               num_pages=16, page_size=4)


def test_pages_restored_after_exception(toy_engine, monkeypatch):
    model = toy_engine.models["large"]
    calls = {"n": 0}
    orig = model.forward

    def boom(batch, kv):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return orig(batch, kv)

    monkeypatch.setattr(model, "forward", boom)
    with pytest.raises(RuntimeError, match="boom"):
        gen(toy_engine, method="speculative", ignore_eos=True)
    monkeypatch.setattr(model, "forward", orig)
    assert full(toy_engine)
    toy_engine.kv.check_invariants()
    assert toy_engine.kv.sequences() == set()
    # and the engine still works
    assert len(gen(toy_engine, ignore_eos=True)[0].token_ids) == 8


def test_pool_too_small_is_an_error(hf_models, tok):
    from fsgen_engine.engine import Engine
    from toy import RecomputeModel

    eng = Engine(RecomputeModel(hf_models["large"], tok), RecomputeModel(hf_models["small"], tok), num_pages=4,
                 page_size=4)
    with pytest.raises(ValueError, match="KV pages"):
        gen(eng, max_new_tokens=40)
    assert full(eng)
