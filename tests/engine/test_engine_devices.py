"""The engine over the real paged models (fsgen_engine.models, not the recompute toy) on every device
present: CPU always, CUDA where there is a GPU, with CUDA graphs off and on (the real
``torch.cuda.CUDAGraph``) on CUDA.

Greedy outputs are compared with HF's full-recompute greedy loop on the CPU in float32: the tiny
models have sharp distributions (LM head scaled up), so rounding differences between devices do not
reach an argmax; a failure here means a kernel or a step of the decode loop is wrong on that device.
"""
import os

import pytest
import torch

from toy import hf_greedy, make_hf

from fsgen_engine import MethodOptions, SamplingParams
from fsgen_engine.generate_args import generate_kwargs
from tests.conftest import DEVICES

PROMPTS = [[1, 5, 6, 7], [1, 9, 10, 11, 12, 13, 14, 15, 16], [1, 20]]
N = 12
SETTINGS = [pytest.param(d, g, id=f"{d}-graphs_{'on' if g else 'off'}")
            for d in DEVICES for g in ([False, True] if d == "cuda" else [False])]
# On a GPU also with every logit row cut into 3 column splits (the CUDA kernels' small-batch path), inside
# the captured graphs: the toy vocabulary is too small for `auto` to split.
SETTINGS += [pytest.param("cuda", True, id="cuda-graphs_on-split3", marks=pytest.mark.split_rows(3))
             for d in DEVICES if d == "cuda"]


@pytest.fixture(scope="module")
def hf_pair():
    # head_dim 64 (hidden 256, 4 heads): a head size the Triton paged attention takes, so CUDA runs it
    large = make_hf("llama", 3, 0, hidden=256)
    small = make_hf("llama", 2, 1, hidden=256)
    other = make_hf("qwen2", 2, 7, hidden=256)
    return {"large": large, "small": small, "other": other}


_engines = {}


def engine_for(hf_pair, device, graphs, small="small"):
    from fsgen_engine.engine import Engine

    key = (device, graphs, small, os.environ.get("FSGEN_SPLIT_ROWS"))  # graphs captured per split setting
    if key not in _engines:
        _engines[key] = Engine(hf_pair["large"], hf_pair[small], device=device, dtype="float32", kv_memory="32MiB",
                               page_size=4, max_batch=4, cuda_graphs=graphs)
    return _engines[key]


def gen(eng, method, n=N, prompts=PROMPTS, **kw):
    return [o.token_ids for o in eng.generate(prompts, method=method, max_new_tokens=n, ignore_eos=True,
                                              progress=False, **generate_kwargs(**kw))]


@pytest.mark.parametrize("device, graphs", SETTINGS)
def test_large_and_small_equal_hf_greedy(hf_pair, device, graphs):
    eng = engine_for(hf_pair, device, graphs)
    if graphs:
        assert eng.graph_status["large"] == "on", eng.graph_status
    for role in ("large", "small"):
        want = [hf_greedy(hf_pair[role], p, N) for p in PROMPTS]
        assert gen(eng, role) == want, role
    assert eng.kv.num_free_pages == eng.kv.num_pages


@pytest.mark.parametrize("device, graphs", SETTINGS)
@pytest.mark.parametrize("small", ["small", "other"])
def test_speculative_greedy_equals_large(hf_pair, device, graphs, small):
    eng = engine_for(hf_pair, device, graphs, small)
    large = gen(eng, "large")
    for k, adaptive in ((1, False), (4, False), (3, True)):
        assert gen(eng, "speculative", num_draft_tokens=k, adaptive_draft=adaptive) == large, (k, adaptive)
    assert gen(eng, "speculative", num_draft_tokens=2, target="contrastive") == gen(eng, "contrastive",
                                                                                    router="always")
    assert eng.kv.num_free_pages == eng.kv.num_pages


@pytest.mark.parametrize("device, graphs", SETTINGS)
def test_routed_methods_agree_with_cpu(hf_pair, device, graphs):
    if device == "cpu":
        pytest.skip("compares a GPU engine against the CPU engine")
    cpu = engine_for(hf_pair, "cpu", False, "other")
    eng = engine_for(hf_pair, device, graphs, "other")
    for method, kw in (("oracle", dict(router="max_prob:0.5")), ("oracle", dict(router="entropy:1.0")),
                       ("contrastive", dict(router="always")), ("bild", {})):
        assert gen(eng, method, **kw) == gen(cpu, method, **kw), (method, kw)


@pytest.mark.parametrize("device, graphs", SETTINGS)
def test_speculative_sampling_matches_large_distribution(hf_pair, device, graphs):
    """First emitted token over many identical rows ~ the large model's filtered distribution. The
    chi-square threshold 1e-3 makes a false failure a 1-in-1000 event for a correct engine (the seed
    is fixed, so the test is reproducible)."""
    from scipy.stats import chisquare

    from fsgen_engine.reference.sample import filtered_probs

    eng = engine_for(hf_pair, device, graphs, "other")
    prompt, n_rows = [1, 40, 41], 240
    outs = eng.generate([prompt] * n_rows, SamplingParams(temperature=1.3, top_k=6, seed=1234), method="speculative",
                        options=MethodOptions(num_draft_tokens=2), max_new_tokens=1, progress=False, ignore_eos=True)
    first = torch.tensor([o.token_ids[0] for o in outs])
    with torch.no_grad():
        z = hf_pair["large"](torch.tensor([prompt])).logits[0, -1:].float()
    p = filtered_probs(z, torch.tensor([1.3]), torch.tensor([6]), torch.tensor([1.0]), torch.tensor([0.0]))[0]
    support = torch.nonzero(p > 0).flatten()
    assert set(first.tolist()) <= set(support.tolist())
    obs = torch.stack([(first == t).sum() for t in support]).double()
    exp = p[support] * n_rows
    assert chisquare(obs.numpy(), exp.numpy() / exp.sum().item() * obs.sum().item()).pvalue > 1e-3
    assert sum(o.stats.mismatches for o in outs) > 0   # the rejection path ran
