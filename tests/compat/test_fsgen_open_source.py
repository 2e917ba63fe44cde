"""FSGenOpenSource (research API) against a straightforward re-implementation of the research loop
(tests/compat/research_loop.py): same tokens, counts, mismatch flags and top-100 records under
greedy decoding, on tiny random HF Llama models."""
import importlib.util
import json

import pytest
import torch

from fsgen_engine.compat import FSGenOpenSource, read_fsgen_records, write_fsgen_records

from .research_loop import research_generate
from .tiny import EOS, tiny_models, tiny_tokenizer

ROUTED = ["OracleDecoding", "ContrastiveDecoding", "ProxyFineTuning"]
ROUTERS = ["normal", "none", "threshold", "delta_threshold"]
PROMPTS = [[1, 7, 19, 3, 100], [1, 44, 9, 201, 5, 17, 60]]
MAX_TOKENS = 10

HAS_ENGINE = importlib.util.find_spec("fsgen_engine.engine") is not None
BACKENDS = ["hf", pytest.param("engine", marks=pytest.mark.skipif(not HAS_ENGINE, reason="engine not built yet"))]


@pytest.fixture(scope="module")
def models():
    return tiny_models(seed=0)


@pytest.fixture(scope="module")
def fsgen_objects(models):
    large, small, small_ft = models
    tok = tiny_tokenizer()
    objs = {"hf": FSGenOpenSource(large, small, tok, small_ft, backend="hf")}
    if HAS_ENGINE:
        objs["engine"] = FSGenOpenSource(large, small, tok, small_ft, device="cpu", dtype=torch.float32)
    return objs


@pytest.fixture(scope="module")
def expected(models):
    large, small, small_ft = models
    cache = {}

    def get(method, router, p):
        key = (method, router, p)
        if key not in cache:
            cache[key] = research_generate(large, small, PROMPTS[p], MAX_TOKENS, method, router, small_ft=small_ft,
                                           eos=EOS)
        return cache[key]

    return get


def _check(got, exp, method):
    tok = tiny_tokenizer()
    assert got["total_tokens_num"] == exp["total"] == len(exp["tokens"])
    assert got["tokens"] == [tok.decode([t]) for t in exp["tokens"]]
    assert got["text"] == tok.decode(exp["tokens"], skip_special_tokens=True)
    assert got["latent_tokens_num"] == exp["latent"]
    assert got["mismatch_tokens_num"] == exp["mismatch"]
    if method == "SpeculativeDecoding":
        return
    assert got["if_match_now"] == exp["if_match_now"]
    assert got["topK"] == 100
    assert len(got["slm_logits_prob"]) == exp["total"] and len(got["llm_logits_prob"]) == exp["latent"]
    for rec, ids in zip(got["slm_logits_prob"] + got["llm_logits_prob"], exp["slm_top"] + exp["llm_top"]):
        probs, idx = rec
        assert len(probs) == 1 and len(probs[0]) == 100 and len(idx) == 100
        assert idx[:10] == ids[:10]
        assert all(a >= b for a, b in zip(probs[0], probs[0][1:]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("method", ROUTED)
def test_routed_methods_match_research_loop(fsgen_objects, expected, backend, method, router):
    fs = fsgen_objects[backend]
    for p, prompt in enumerate(PROMPTS):
        ids = torch.tensor([prompt])
        got = fs.generate_text(ids, max_tokens=MAX_TOKENS, collabrate_method={"method": method},
                               router_method={"method": router}, temperature=0)
        _check(got, expected(method, router, p), method)


@pytest.mark.parametrize("backend", BACKENDS)
def test_speculative_matches_research_loop(fsgen_objects, expected, backend):
    fs = fsgen_objects[backend]
    for p, prompt in enumerate(PROMPTS):
        got = fs.generate_text(prompt, max_tokens=MAX_TOKENS, collabrate_method={"method": "SpeculativeDecoding",
                                                                                  "K": 5},
                               router_method={"method": "normal"}, temperature=0)
        _check(got, expected("SpeculativeDecoding", "normal", p), "SpeculativeDecoding")


def test_routers_fire_on_a_mix_of_steps(expected):
    # guards the fixture: threshold routers must neither always nor never fire, or they test nothing
    for router in ("threshold", "delta_threshold"):
        exp = [expected("OracleDecoding", router, p) for p in range(len(PROMPTS))]
        assert 0 < sum(e["latent"] for e in exp) < sum(e["total"] for e in exp)
    exp = [expected("OracleDecoding", "normal", p) for p in range(len(PROMPTS))]
    assert 0 < sum(e["mismatch"] for e in exp) < sum(e["total"] for e in exp)


def test_stop_word_ids_cut_the_output(models):
    large, small, small_ft = models
    fs = FSGenOpenSource(large, small, tiny_tokenizer(), small_ft, backend="hf")
    full = fs.generate_text([PROMPTS[0]], max_tokens=MAX_TOKENS, router_method={"method": "threshold"}, temperature=0)
    tok = tiny_tokenizer()
    ids = tok.convert_tokens_to_ids(full["tokens"])
    stop = [ids[4], ids[5]]
    cut = next(i + 2 for i in range(len(ids) - 1) if ids[i:i + 2] == stop)
    stop_words = [stop]
    got = fs.generate_text([PROMPTS[0]], max_tokens=MAX_TOKENS, router_method={"method": "threshold"},
                           temperature=0, stop_word_ids=stop_words)
    assert stop_words == [stop]  # not mutated (the research code appended EOS to the caller's list)
    assert got["tokens"] == full["tokens"][:cut] and got["total_tokens_num"] == cut
    assert got["if_match_now"] == full["if_match_now"][:got["latent_tokens_num"]]


def test_bad_inputs(models):
    large, small, _ = models
    fs = FSGenOpenSource(large, small, tiny_tokenizer(), backend="hf")
    with pytest.raises(ValueError, match="small_ft_model"):
        fs.generate_text([1, 2], collabrate_method={"method": "ProxyFineTuning"})
    with pytest.raises(ValueError, match="batch size"):
        fs.generate_text(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="router_method"):
        fs.generate_text([1, 2], router_method={"method": "magic"})


def test_records_roundtrip(tmp_path, models):
    large, small, small_ft = models
    fs = FSGenOpenSource(large, small, tiny_tokenizer(), small_ft, backend="hf", record_distributions=False)
    recs = [fs.generate_text([p], max_tokens=4, router_method="threshold", temperature=0) for p in PROMPTS]
    path = tmp_path / "records.jsonl"
    n = write_fsgen_records(path, recs, dataset="gsm8k", inputs=["q1", "q2"], correct=[True, False],
                            llm_name="org/large", slm_name="org/small",
                            method_info=[{"method": "threshold", "threshold": 0.5}, {"method": "OracleDecoding"}])
    assert n == 2
    back = read_fsgen_records(path)
    assert [r["id"] for r in back] == [0, 1] and [r["inputs"] for r in back] == ["q1", "q2"]
    assert back[1]["correct"] is False and back[0]["dataset"] == "gsm8k" and back[0]["slm_text"] == ""
    for r, orig in zip(back, recs):
        assert {k: r[k] for k in orig} == json.loads(json.dumps(orig))
    with pytest.raises(ValueError, match="one per record"):
        write_fsgen_records(path, recs, inputs=["only one"])
    (tmp_path / "bad.jsonl").write_text('{"prompt": 1}\n')
    with pytest.raises(ValueError, match="not an FS-GEN record"):
        read_fsgen_records(tmp_path / "bad.jsonl")


def test_speculative_stop_counts(models):
    # speculative counts over a stop-word prefix: rounds and rejections of the kept tokens only
    large, small, small_ft = models
    fs = FSGenOpenSource(large, small, tiny_tokenizer(), small_ft, backend="hf")
    full = fs.generate_text([PROMPTS[0]], max_tokens=MAX_TOKENS, collabrate_method="SpeculativeDecoding")
    ids = tiny_tokenizer().convert_tokens_to_ids(full["tokens"])
    cut = fs.generate_text([PROMPTS[0]], max_tokens=MAX_TOKENS, collabrate_method="SpeculativeDecoding",
                           stop_word_ids=[[ids[6]]])
    n = ids.index(ids[6]) + 1
    exp = research_generate(large, small, PROMPTS[0], n, "SpeculativeDecoding", eos=ids[6])
    assert cut["tokens"] == full["tokens"][:n]
    assert (cut["total_tokens_num"], cut["latent_tokens_num"], cut["mismatch_tokens_num"]) == \
        (exp["total"], exp["latent"], exp["mismatch"])


def test_svm_router(tmp_path, models):
    from tests.cli.test_train_router import _synthetic_outputs

    from fsgen_engine.outputs import write_traces
    from fsgen_engine.router_training import save_router, train_router_from_traces

    write_traces(tmp_path / "t.jsonl", _synthetic_outputs(2, 60, seed=1))
    save_router(train_router_from_traces([str(tmp_path / "t.jsonl")], kind="logistic"), str(tmp_path / "r.json"))
    large, small, small_ft = models
    fs = FSGenOpenSource(large, small, tiny_tokenizer(), small_ft, backend="hf", record_distributions=False)
    got = fs.generate_text([PROMPTS[1]], max_tokens=3, router_method={"method": "svm",
                                                                       "trained_model_path": str(tmp_path / "r.json")})
    assert got["total_tokens_num"] == 3 and len(got["if_match_now"]) == got["latent_tokens_num"] <= 3
