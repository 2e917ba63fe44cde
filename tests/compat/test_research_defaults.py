"""The drop-in reproduces the research code by default: ``logits_gen.py`` calls
``generate_text(..., temperature=0.7)`` and the research decoding is greedy regardless, so the default
FSGenOpenSource must return the greedy tokens and counts for that call (warning once that the
temperature is ignored); sampling with the temperature is the opt-in ``research_greedy=False``."""
import warnings

import pytest
import torch

from fsgen_engine.compat import FSGenOpenSource

from .research_loop import research_generate
from .tiny import EOS, tiny_models, tiny_tokenizer

PROMPT = [1, 44, 9, 201, 5, 17, 60]
MAX_TOKENS = 8


@pytest.fixture(scope="module")
def models():
    return tiny_models(seed=0)


@pytest.mark.parametrize("backend", ["engine", "hf"])
@pytest.mark.parametrize("method", ["OracleDecoding", "ContrastiveDecoding"])
def test_research_call_with_temperature_07_is_greedy(models, backend, method):
    large, small, small_ft = models
    exp = research_generate(large, small, PROMPT, MAX_TOKENS, method, "threshold", small_ft=small_ft, eos=EOS)
    kw = {"device": "cpu", "dtype": torch.float32} if backend == "engine" else {"backend": "hf"}
    fs = FSGenOpenSource(large, small, tiny_tokenizer(), small_ft, **kw)
    with pytest.warns(UserWarning, match="temperature=0.7 is ignored"):
        got = fs.generate_text([PROMPT], max_tokens=MAX_TOKENS, collabrate_method={"method": method},
                               router_method={"method": "threshold"}, temperature=0.7)
    tok = tiny_tokenizer()
    assert got["tokens"] == [tok.decode([t]) for t in exp["tokens"]]
    assert (got["total_tokens_num"], got["latent_tokens_num"], got["mismatch_tokens_num"]) == \
        (exp["total"], exp["latent"], exp["mismatch"])
    assert got["if_match_now"] == exp["if_match_now"]
    with warnings.catch_warnings():  # warned once: the second call is silent
        warnings.simplefilter("error")
        again = fs.generate_text([PROMPT], max_tokens=MAX_TOKENS, collabrate_method={"method": method},
                                 router_method={"method": "threshold"}, temperature=0.7)
    assert again["tokens"] == got["tokens"]


def test_temperature_is_honoured_only_on_opt_in(models):
    large, small, small_ft = models
    greedy = research_generate(large, small, PROMPT, MAX_TOKENS, "OracleDecoding", "normal", eos=EOS)["tokens"]
    fs = FSGenOpenSource(large, small, tiny_tokenizer(), small_ft, backend="hf", research_greedy=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: the temperature is used
        sampled = [fs.generate_text([PROMPT], max_tokens=MAX_TOKENS, router_method={"method": "normal"},
                                    temperature=5.0, seed=s)["tokens"] for s in range(4)]
    tok = tiny_tokenizer()
    assert any(t != [tok.decode([g]) for g in greedy] for t in sampled)
