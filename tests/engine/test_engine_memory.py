"""Memory stays flat over thousands of generations: every page returns to the pool, no per-sequence
state outlives its generation, and repeated identical calls do not grow Python's heap."""
from __future__ import annotations

import gc
import tracemalloc

import torch

from fsgen_engine.engine import Engine
from fsgen_engine.generate_args import generate_kwargs
from fsgen_engine.models import from_hf_model
from tests.models.conftest import make_hf


def _state_sizes(eng: Engine) -> tuple:
    return (eng.kv.num_free_pages, sum(len(t) for t in eng.kv.tables.values()), eng.kv.allocator.num_free)


def test_thousands_of_generations_leave_no_state():
    large = from_hf_model(make_hf("llama", layers=2, seed=3))
    eng = Engine(large, "early_exit:1", device="cpu", num_pages=96, page_size=4, max_batch=16)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 200, (int(n),), generator=g).tolist() for n in torch.randint(1, 9, (250,), generator=g)]
    empty = (eng.kv.num_pages, 0, eng.kv.num_pages)
    methods = [dict(method="large"), dict(method="speculative", num_draft_tokens=2),
               dict(method="oracle", router="max_prob:0.5"), dict(method="bild")]
    done = 0
    heap = []
    tracemalloc.start()
    try:
        for rnd in range(3):
            for kw in methods:   # 250 prompts each: 3000 generations over the test
                outs = eng.generate(prompts, max_new_tokens=3, ignore_eos=True, progress=False,
                                    **generate_kwargs(**kw))
                assert all(len(o.token_ids) == 3 for o in outs)
                done += len(outs)
                assert _state_sizes(eng) == empty, kw
            gc.collect()
            heap.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    eng.kv.check_invariants()
    assert done == 3000
    # the first round warms caches (sampling parameters per batch size, rotary tables); after that the
    # heap must not grow with the number of generations (a leak of even 100 B per generation is 100 KB here)
    assert heap[2] - heap[1] < 64 * 1024, heap
