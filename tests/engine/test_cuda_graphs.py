"""runtime/cuda_graphs.py: replaying a captured step equals the eager forward.

On CUDA the real ``torch.cuda.CUDAGraph`` backend runs. On a CPU ``EmulatedGraphs`` replays by
re-running the captured function over the static buffers, which checks everything but the capture
itself: the copy-in of every ForwardBatch field, padding rows (batch buckets), graphs reused across
batch sizes and context lengths, and the KV the steps store.
"""
from __future__ import annotations

import pytest
import torch

from fsgen_engine.engine import GRAPH_MAX_Q_LEN
from fsgen_engine.generate_args import generate_kwargs
from fsgen_engine.models import from_hf_model
from fsgen_engine.runtime import cuda_graphs as CG
from fsgen_engine.runtime.cuda_graphs import EmulatedGraphs, GraphedForward, batch_buckets
from tests.models._paged import PagedSeqs
from tests.models.conftest import VOCAB, make_hf


def _backend(device):
    return None if device == "cuda" else EmulatedGraphs()


def test_batch_buckets():
    assert batch_buckets(1) == [1]
    assert batch_buckets(8) == [1, 2, 4, 8]
    assert batch_buckets(6) == [1, 2, 4, 6]


@pytest.mark.parametrize("kind", ["llama", "neox"])
def test_graph_steps_match_eager(kind, device, monkeypatch):
    monkeypatch.setattr(CG, "MIN_CONTEXT_BUCKET", 16)   # several context buckets at tiny lengths
    model = from_hf_model(make_hf(kind, layers=2), device=device)
    eager = PagedSeqs(model, num_pages=64, page_size=4, seed=1)
    graphed = PagedSeqs(model, num_pages=64, page_size=4, seed=1)      # same page permutation
    gf = GraphedForward(model, graphed.kv, max_batch=8, max_pages=16, page_size=4, max_q_len=5,
                        backend=_backend(device))
    g = torch.Generator().manual_seed(3)
    rand = lambda n: torch.randint(3, VOCAB, (n,), generator=g).tolist()  # noqa: E731
    prompts = {0: rand(5), 1: rand(11), 2: rand(1)}
    eager.step(prompts, logits="all")
    graphed.step(prompts, logits="all")   # ragged prefill: eager in both
    steps = [({0: 1, 1: 1, 2: 1}, "last"),          # decode, 3 rows -> bucket 4
             ({0: 4, 1: 4, 2: 4}, "all"),           # verify K=3, all K+1 logits
             ({0: 1, 2: 1}, "last"),                # 2 rows -> bucket 2
             ({0: 1, 1: 1, 2: 1}, "last"),          # bucket 4 again: same graph, stale padding reset
             ({0: 5, 1: 5, 2: 5}, "last"),          # verify, last logits only
             ({1: 1}, "last")] + [({0: 1, 1: 1, 2: 1}, "last")] * 12   # contexts grow past 32 tokens
    for counts, logits in steps:
        new = {s: rand(n) for s, n in counts.items()}
        want = eager.step(new, logits=logits)
        b = graphed.batch(new, logits=logits)
        q = next(iter(counts.values()))
        n = q if logits == "all" else 1
        assert gf.accepts(b, q, n)
        got = gf.run(b, q, n)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    for ke, kg in zip(eager.kv.k + eager.kv.v, graphed.kv.k + graphed.kv.v):
        torch.testing.assert_close(kg, ke, atol=1e-5, rtol=1e-5)
    contexts = {key[3] for key in gf.graphs}
    assert len(contexts) >= 2, gf.graphs.keys()   # graphs were captured per context bucket
    assert {key[:3] for key in gf.graphs} == {(4, 1, 1), (4, 4, 4), (2, 1, 1), (4, 5, 1), (1, 1, 1)}
    if device == "cpu":
        assert gf.backend.replays == len(steps) and gf.backend.captures == len(gf.graphs)


def test_accepts_only_uniform_steps():
    model = from_hf_model(make_hf("llama", layers=1))
    ps = PagedSeqs(model, num_pages=32, page_size=4)
    gf = GraphedForward(model, ps.kv, max_batch=2, max_pages=4, page_size=4, max_q_len=3, backend=EmulatedGraphs())
    ragged = ps.batch({0: [5, 6], 1: [7]})
    assert not gf.accepts(ragged, 2, 1)
    assert not gf.accepts(ps.batch({0: [5, 6, 7, 8]}), 4, 1)          # q_len above max_q_len
    assert not gf.accepts(ps.batch({0: [5], 1: [6], 2: [7]}), 1, 1)    # batch above max_batch
    assert not gf.accepts(ps.batch({0: [5, 6]}), 2, 3)                 # n_logits neither 1 nor q_len
    ps.batch({9: [1] * 16})
    assert not gf.accepts(ps.batch({9: [1]}), 1, 1)                    # 17 tokens: more than 4 pages of 4
    assert gf.accepts(ps.batch({0: [5], 1: [6]}), 1, 1)


def _engine(device, graphs: bool):
    from fsgen_engine.engine import Engine

    large = from_hf_model(make_hf("llama", layers=3, seed=4), device=device)
    eng = Engine(large, "early_exit:1", device=device, dtype="float32", num_pages=256, page_size=4, max_batch=4,
                 cuda_graphs=graphs if device == "cuda" else None)
    if graphs and device == "cpu":
        eng.graphs = {m: GraphedForward(mod, eng.kv.cache(m), max_batch=4, max_pages=40, page_size=4,
                                        max_q_len=GRAPH_MAX_Q_LEN, backend=EmulatedGraphs())
                      for m, mod in eng.models.items()}
        eng.runner.graphs = eng.graphs
    return eng


@pytest.mark.parametrize("method", ["large", "speculative"])
def test_engine_with_graphs_equals_eager(method, device):
    prompts = [[1, 5, 6, 7], [1, 9, 10, 11, 12, 13, 14, 15, 16], [1, 20]]
    kw = dict(method=method, max_new_tokens=12, num_draft_tokens=3, ignore_eos=True, progress=False)
    want = [o.token_ids for o in _engine(device, False).generate(prompts, **generate_kwargs(**kw))]
    eng = _engine(device, True)
    got = [o.token_ids for o in eng.generate(prompts, **generate_kwargs(**kw))]
    assert got == want
    assert eng.graphs["large"].graphs, "the large model's uniform steps never ran through a graph"
    if method == "speculative":
        assert eng.graphs["small"].graphs, "the drafter's decode steps never ran through a graph"
    eng.kv.check_invariants()
    assert eng.kv.allocator.num_free == eng.kv.num_pages


def test_engine_graph_arguments():
    from fsgen_engine.engine import Engine

    large = from_hf_model(make_hf("llama", layers=2))
    with pytest.raises(ValueError, match="cuda_graphs=True needs a CUDA device"):
        Engine(large, "early_exit:1", device="cpu", num_pages=32, page_size=4, cuda_graphs=True)
    with pytest.raises(ValueError, match="cuda_graphs='yes'"):
        Engine(large, "early_exit:1", device="cpu", num_pages=32, page_size=4, cuda_graphs="yes")
    eng = Engine(large, "early_exit:1", device="cpu", num_pages=32, page_size=4)
    assert eng.graphs == {} and set(eng.graph_status.values()) == {"off"}


def test_long_verification_is_graphed(device):
    """K = 20 drafts (q_len 21, above the old fixed limit of 16) replays a graph and equals eager:
    the engine's max_q_len covers every K generate accepts."""
    prompts = [[1, 5, 6, 7], [1, 20]]
    kw = dict(method="speculative", max_new_tokens=45, num_draft_tokens=20, ignore_eos=True, progress=False)
    want = [o.token_ids for o in _engine(device, False).generate(prompts, **generate_kwargs(**kw))]
    eng = _engine(device, True)
    got = [o.token_ids for o in eng.generate(prompts, **generate_kwargs(**kw))]
    assert got == want
    assert any(key[1] == 21 for key in eng.graphs["large"].graphs), list(eng.graphs["large"].graphs)
