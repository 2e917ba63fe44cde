"""The engine at tensor_parallel=2 over gloo (real worker processes) against the single-process engine:
every method and router gives the same tokens and counts, greedy and sampled (rank 0 samples), with
System 1 whole on rank 0 or sharded like System 2."""
from __future__ import annotations

import pytest

from fsgen_engine import Engine, MethodOptions, SamplingParams
from tests.tp.conftest import engine_kwargs

# one xdist worker runs the tensor-parallel tests in order: each spawns ranks of its own, and one
# spawned group per process is open at a time
pytestmark = pytest.mark.xdist_group("tp")

PROMPTS = [[1, 5, 6, 7], [1, 9, 10, 11, 12, 13, 14, 15, 16], [1, 20]]
CASES = [
    ("large", None, MethodOptions()),
    ("small", None, MethodOptions()),
    ("speculative", None, MethodOptions(num_draft_tokens=3)),
    ("speculative", None, MethodOptions(num_draft_tokens=2, adaptive_draft=True)),
    ("speculative", None, MethodOptions(num_draft_tokens=4, draft_stop="entropy:1.0")),
    ("speculative", None, MethodOptions(num_draft_tokens=3, target="contrastive")),
    ("contrastive", "entropy:1.5", MethodOptions()),
    ("proxy", "always", MethodOptions()),
    ("oracle", "max_prob:0.7", MethodOptions()),
    ("oracle", "margin:0.3", MethodOptions()),
    ("bild", None, MethodOptions()),
]


def _key(outs):
    s = lambda o: (o.stats.large_calls, o.stats.mismatches, o.stats.draft_tokens, o.stats.accepted_draft_tokens,  # noqa: E731
                   o.stats.draft_stops, o.stats.wasted_draft_tokens)
    return [(o.token_ids, o.finish_reason, s(o)) for o in outs]


@pytest.fixture(scope="module")
def single(tp_folders):
    return Engine(tp_folders["large"], tp_folders["small"], tp_folders["small_ft"], **engine_kwargs())


@pytest.fixture(scope="module")
def tp2(tp_folders):
    with Engine(tp_folders["large"], tp_folders["small"], tp_folders["small_ft"], tensor_parallel=2,
                **engine_kwargs()) as e:
        yield e


def _gen(engine, method, router, options, sampling=None, n=1):
    return engine.generate(PROMPTS, sampling, method=method, router=router, options=options, max_new_tokens=10, n=n,
                           progress=False)


@pytest.mark.parametrize("method,router,options", CASES, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_greedy_equals_single_process(single, tp2, method, router, options):
    want = _gen(single, method, router, options)
    got = _gen(tp2, method, router, options)
    assert _key(got) == _key(want)


@pytest.mark.parametrize("method", ["large", "speculative", "contrastive"])
def test_sampled_equals_single_process(single, tp2, method):
    sp = SamplingParams(temperature=0.9, top_p=0.95, seed=11)
    opts = MethodOptions(num_draft_tokens=3)
    assert _key(_gen(tp2, method, None, opts, sp, n=2)) == _key(_gen(single, method, None, opts, sp, n=2))


def test_graph_status_says_why_eager(tp2):
    assert "tensor parallel" in tp2.graph_status["large"] or tp2.graph_status["large"] == "off"
    assert tp2.models["large"].tp_size == 2 and not hasattr(tp2.models["small"], "tp_size")


@pytest.mark.parametrize("method,options", [("large", MethodOptions()),
                                            ("speculative", MethodOptions(num_draft_tokens=3)),
                                            ("speculative", MethodOptions(num_draft_tokens=2, adaptive_draft=True))])
def test_greedy_large_side_gathers_no_logits(single, tp2, monkeypatch, method, options):
    # greedy decoding and greedy verification need the large model's argmax only: the ranks merge
    # (max, id) pairs (ops.vocab_parallel) and the [B, V] logits all-gather never runs
    from fsgen_engine.models.tensor_parallel import TPShard

    def refuse(*a, **k):
        raise AssertionError("the logits were gathered")

    monkeypatch.setenv("FSGEN_TP_LOGITS", "merge")   # auto gathers a step this small
    monkeypatch.setattr(TPShard, "gather_vocab", refuse)
    assert _key(_gen(tp2, method, None, options)) == _key(_gen(single, method, None, options))
