"""``generate(..., trace_topk=K)``: the per-token top-K distributions of System 1 and System 2 against
the HF models' own distributions at each emitted prefix, the trace columns' storage and round trip,
the research records built from them, and the CLI path into ``fsgen train-router``."""
import json

import pytest
import torch

from conftest import PROMPTS
from fsgen_engine.generate_args import generate_kwargs
from fsgen_engine.outputs import (TOPK_FIELDS, TRACE_FIELDS, GenerationOutput, GenerationStats, Trace, TraceStep,
                                  read_traces, write_traces)

K = 5
N = 8

# (method, engine fixture, generate kwargs): the far engine's unrelated small model makes routers fire
# on some steps only and speculative drafts get rejected (correction tokens); the toy engine's close
# small model gets whole rounds accepted (bonus tokens)
CASES = [
    ("large", "toy_engine", {}),
    ("small", "toy_engine", {}),
    ("oracle", "far_engine", {"router": "max_prob:0.5"}),
    ("contrastive", "far_engine", {"router": "always"}),
    ("proxy", "far_engine", {"router": "always"}),
    ("speculative", "toy_engine", {"num_draft_tokens": 3}),
    ("speculative", "far_engine", {"num_draft_tokens": 3, "adaptive_draft": True}),
    ("speculative", "far_engine", {"num_draft_tokens": 2, "target": "contrastive"}),
    ("bild", "far_engine", {"router": None, "bild_rollback": 3.0, "bild_max_small": 4}),
]


def gen(engine, method, n=N, prompts=PROMPTS, **kw):
    return engine.generate(prompts, method=method, max_new_tokens=n, progress=False, ignore_eos=True,
                           **generate_kwargs(**kw))


def hf_topk(model, ids, k=K):
    """(probs, ids) of the top-k of softmax(HF last-position logits) after ``ids``."""
    with torch.no_grad():
        z = model(torch.tensor([ids])).logits[0, -1].float()
    top = torch.topk(torch.softmax(z, -1), k)
    return top.values.tolist(), top.indices.tolist()


def system_models(hf_models, engine_name, method, kw):
    """The HF models behind System 1 and System 2 of this engine and method."""
    small = hf_models["other"] if engine_name == "far_engine" else hf_models["small"]
    proxy = method == "proxy" or kw.get("target") == "proxy"
    return (hf_models["small_ft"] if proxy else small), hf_models["large"]


def check_step(model, ids, probs, tok_ids):
    want_p, want_i = hf_topk(model, ids)
    assert tok_ids == want_i
    assert probs == pytest.approx(want_p, abs=1e-5)
    assert probs == sorted(probs, reverse=True)


@pytest.mark.parametrize("method,engine_name,kw", CASES)
def test_topk_equals_hf_distributions(request, hf_models, method, engine_name, kw):
    eng = request.getfixturevalue(engine_name)
    sys1, sys2 = system_models(hf_models, engine_name, method, kw)
    outs = gen(eng, method, trace_topk=K, **kw)
    plain = gen(eng, method, trace_topk=0, **kw)
    assert [o.token_ids for o in outs] == [o.token_ids for o in plain]  # tracing changes nothing else
    n_small = n_large = 0
    for p, o in zip(PROMPTS, outs):
        assert o.meta["trace_topk"] == K
        for i, s in enumerate(o.trace):
            prefix = list(p) + o.token_ids[:i]
            # System 1's top-K exactly where System 1 gave a distribution for this position
            assert (s.small_topk_probs is not None) == (s.small_argmax >= 0)
            if s.small_topk_probs is not None:
                n_small += 1
                check_step(sys1, prefix, s.small_topk_probs, s.small_topk_ids)
                assert s.small_topk_probs[0] == pytest.approx(s.small_max_prob, abs=1e-5)
                assert s.small_topk_ids[0] == s.small_argmax
            # System 2's (its own logits, never fused ones) exactly at the routed steps
            assert (s.large_topk_probs is not None) == s.routed
            if s.large_topk_probs is not None:
                n_large += 1
                check_step(sys2, prefix, s.large_topk_probs, s.large_topk_ids)
                assert s.large_topk_ids[0] == s.large_argmax   # the large model's own argmax, unfused
    if method != "large":
        assert n_small > 0
    if method != "small":
        assert n_large > 0
    cols = [o.trace.columns for o in outs]
    if method == "oracle":  # the threshold router fired on some steps, not all
        assert 0 < sum(sum(c["routed"]) for c in cols) < N * len(outs)
    if method == "speculative":
        assert all(all(c["routed"]) for c in cols)
        if engine_name == "toy_engine":  # some bonus token: no System-1 distribution there
            assert any(p == [] and s == "large" for c in cols for p, s in zip(c["small_topk_probs"], c["source"]))
    if method == "bild":  # a rollback step reuses the replaced step's System-1 top-K
        assert any("rollback" in c["source"] for c in cols)
    for o in plain:
        assert not o.trace.has_topk and not set(TOPK_FIELDS) & set(o.trace.columns)
        assert "trace_topk" not in o.meta


def test_topk_larger_than_vocab_keeps_every_token(toy_engine):
    o = gen(toy_engine, "small", n=2, prompts=PROMPTS[:1], trace_topk=1000)[0]
    probs = o.trace.columns["small_topk_probs"][0]
    assert len(probs) == toy_engine.vocab_size
    assert sum(probs) == pytest.approx(1.0, abs=1e-4)
    assert sorted(o.trace.columns["small_topk_ids"][0]) == list(range(toy_engine.vocab_size))


@pytest.mark.parametrize("bad", [-1, 1.5, True, 5000, "5", None])
def test_bad_trace_topk(toy_engine, bad):
    free = toy_engine.kv.num_free_pages
    with pytest.raises(ValueError, match="trace_topk"):
        gen(toy_engine, "small", n=2, trace_topk=bad)
    assert toy_engine.kv.num_free_pages == free


# ---------------------------------------------------------------------------------------- storage


def _step(i, small=None, large=None):
    return TraceStep(position=i, small_entropy=0.5, small_max_prob=0.6, small_margin=0.2, routed=large is not None,
                     token=7, small_argmax=7, large_argmax=7 if large else -1, source="small",
                     small_topk_probs=small and small[0], small_topk_ids=small and small[1],
                     large_topk_probs=large and large[0], large_topk_ids=large and large[1])


def test_trace_columns_created_on_first_use_and_back_filled():
    tr = Trace()
    tr.append(_step(0))
    assert set(tr.columns) == set(TRACE_FIELDS) and not tr.has_topk
    tr.append(_step(1, small=([0.6, 0.3], [7, 8])))
    assert tr.columns["small_topk_probs"] == [[], [0.6, 0.3]] and "large_topk_probs" not in tr.columns
    tr.append(_step(2, large=([0.9, 0.1], [4, 5])))
    assert tr.columns["small_topk_ids"] == [[], [7, 8], []]
    assert tr.columns["large_topk_ids"] == [[], [], [4, 5]]
    steps = list(tr)
    assert steps[0].small_topk_probs is None and steps[1].small_topk_ids == [7, 8]
    assert steps[2].large_topk_probs == [0.9, 0.1] and steps[1].large_topk_probs is None
    assert tr.step(1) == steps[1]
    back = Trace.from_dict(json.loads(json.dumps(tr.to_dict())))
    assert back.columns == tr.columns and list(back) == steps
    tr.truncate(2)
    assert all(len(v) == 2 for v in tr.columns.values())


def test_trace_from_dict_old_files_and_bad_columns():
    old = {k: [] for k in TRACE_FIELDS}
    tr = Trace.from_dict(old)
    assert len(tr) == 0 and not tr.has_topk
    tr = Trace()
    tr.append(_step(0, small=([1.0], [3])))
    d = tr.to_dict()
    d["small_topk_ids"] = []
    with pytest.raises(ValueError, match="small_topk_ids"):
        Trace.from_dict(d)


def test_write_read_traces_with_and_without_topk(toy_engine, tmp_path):
    outs = gen(toy_engine, "speculative", n=5, num_draft_tokens=2, trace_topk=3)
    outs += gen(toy_engine, "oracle", n=5, router="max_prob:0.5")
    path = tmp_path / "t.jsonl"
    write_traces(path, outs)
    back = read_traces(path)
    for a, b in zip(outs, back):
        assert json.dumps(b.trace.to_dict()) == json.dumps(a.trace.to_dict())  # (NaN stats: compare as JSON)
        assert [s.small_topk_ids for s in b.trace] == [s.small_topk_ids for s in a.trace]
        assert [s.large_topk_probs for s in b.trace] == [s.large_topk_probs for s in a.trace]
        assert b.trace.has_topk == a.trace.has_topk
    assert back[0].trace.has_topk and not back[-1].trace.has_topk


# ---------------------------------------------------------------------------------------- records


def _research_entries(probs_col, ids_col):
    return [[[p], i] for p, i in zip(probs_col, ids_col)]


@pytest.mark.parametrize("method,kw", [("oracle", {"router": "max_prob:0.5"}),
                                       ("speculative", {"num_draft_tokens": 3})])
def test_record_from_output_distributions(far_engine, toy_engine, hf_models, method, kw):
    from fsgen_engine.compat.fsgen_open_source import _topk_entries
    from fsgen_engine.records import record_from_output

    eng = far_engine if method == "oracle" else toy_engine
    for o in gen(eng, method, trace_topk=K, **kw):
        rec = record_from_output(o)
        c = o.trace.columns
        assert rec["topK"] == K
        assert len(rec["slm_logits_prob"]) == len(rec["tokens"]) == len(o.token_ids)
        assert rec["slm_logits_prob"] == _research_entries(c["small_topk_probs"], c["small_topk_ids"])
        fired = [i for i, r in enumerate(c["routed"]) if r]
        assert len(rec["llm_logits_prob"]) == len(fired) == len(rec["if_match_now"])
        assert rec["llm_logits_prob"] == [[[c["large_topk_probs"][i]], c["large_topk_ids"][i]] for i in fired]
        # a step without a System-1 distribution (speculative bonus token) keeps its place, empty
        assert all((e == [[[]], []]) == (p == []) for e, p in zip(rec["slm_logits_prob"], c["small_topk_probs"]))
        assert all(len(e[0][0]) == len(e[1]) == K for e in rec["llm_logits_prob"])
        # the same layout and values as the research API's own distributions (FSGenOpenSource)
        with torch.no_grad():
            z = hf_models["large"](torch.tensor([list(o.prompt) + o.token_ids[:fired[0]]])).logits[0, -1:].float()
        want = _topk_entries(z, K)[0]
        got = rec["llm_logits_prob"][0]
        assert got[1] == want[1] and got[0][0] == pytest.approx(want[0][0], abs=1e-5)
    plain = record_from_output(gen(eng, method, **kw)[0])
    assert (plain["topK"], plain["slm_logits_prob"], plain["llm_logits_prob"]) == (0, [], [])


def test_record_topk_without_meta_uses_row_length():
    from fsgen_engine.records import record_from_output

    tr = Trace()
    tr.append(_step(0, small=([0.6, 0.3, 0.1], [7, 8, 9]), large=([0.5, 0.5, 0.0], [7, 1, 2])))
    tr.append(_step(1))
    out = GenerationOutput([7, 7], "", "length", GenerationStats(total_tokens=2, large_calls=1), tr, [1], "oracle",
                           "always")
    rec = record_from_output(out)
    assert rec["topK"] == 3
    assert rec["slm_logits_prob"] == [[[[0.6, 0.3, 0.1]], [7, 8, 9]], [[[]], []]]
    assert rec["llm_logits_prob"] == [[[[0.5, 0.5, 0.0]], [7, 1, 2]]]


# ---------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from tests.compat.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny"))


def test_cli_generate_trace_topk_trains_topk_router(saved, tmp_path, capsys):
    from fsgen_engine.cli import main
    from fsgen_engine.router_training import load_router

    large, small, _ = saved
    traces = tmp_path / "traces.jsonl"
    prompts = [x for i in range(6) for x in ("--prompt", f"w{5 + 7 * i} w{6 + 3 * i} w{40 + i}")]
    base = ["generate", "--large", large, "--small", small, "--method", "oracle", "--router", "always",
            "--max-new-tokens", "12", "--device", "cpu", "--dtype", "float32", "--ignore-eos", "--quiet", *prompts]
    assert main([*base, "--trace-topk", "4", "--out", str(traces)]) == 0
    outs = read_traces(traces)
    assert all(len(p) == 4 for o in outs for p in o.trace.columns["small_topk_probs"])
    router = tmp_path / "router.joblib"
    assert main(["train-router", str(traces), "--out", str(router), "--top-k", "4"]) == 0
    assert load_router(str(router))["features"] == "topk:4"
    capsys.readouterr()
    assert main([*base, "--trace-topk", "-1"]) == 2
    assert "trace_topk=-1" in capsys.readouterr().err


def test_cli_eval_trace_topk(saved, tmp_path):
    from fsgen_engine.cli import main

    large, small, _ = saved
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": "#### 3"}) + "\n" for q in ("w5 w6", "w9 w10 w11")))
    out = tmp_path / "out"
    assert main(["eval", "--dataset", "gsm8k", "--data", str(data), "--large", large, "--small", small,
                 "--method", "oracle", "--router", "always", "--max-new-tokens", "4", "--device", "cpu",
                 "--dtype", "float32", "--trace-topk", "3", "--out", str(out)]) == 0
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert recs and all(r["topK"] == 3 and len(r["slm_logits_prob"]) == r["total_tokens_num"]
                        and len(r["llm_logits_prob"]) == r["latent_tokens_num"] for r in recs)
    assert all(o.trace.has_topk for o in read_traces(out / "traces.jsonl"))
