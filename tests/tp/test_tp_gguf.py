"""The embedded SmolLM2-135M GGUF sharded over 2 gloo ranks: 9 heads / 3 KV heads split unevenly (6 + 3
query heads), Q8_0 / Q4_1 rows dequantised per block, llama.cpp's q/k permutation undone per block,
tied embeddings vocab-parallel: logits equal the unsharded model's."""
from __future__ import annotations

import numpy as np

import pytest

from fsgen_engine.models import load_model
from fsgen_engine.models.tensor_parallel import TPShard
from tests._embedded_model import requires_embedded_model, smollm2_gguf_path
from tests.models._paged import PagedSeqs
from tests.tp._ranks import run_ranks

# one xdist worker runs the tensor-parallel tests in order: each spawns ranks of its own, and one
# spawned group per process is open at a time
pytestmark = pytest.mark.xdist_group("tp")

STEPS = [({0: [1, 504, 3458, 282, 4649, 314], 1: [1, 2001]}, "all"), ({0: [77], 1: [400, 55]}, "last")]


def _run(model):
    s = PagedSeqs(model, num_pages=16, page_size=16)
    return [s.step(new, logits=rows).numpy() for new, rows in STEPS]


def _shard(rank, size, path):
    return _run(load_model(path, tokenizer=False, tp=TPShard(rank, size))[0])


@requires_embedded_model
def test_smollm2_gguf_tp2_matches_unsharded():
    path = smollm2_gguf_path()
    got = run_ranks(2, _shard, path)
    want = _run(load_model(path, tokenizer=False)[0])
    for a, b in zip(got, want):
        # fp32 logits of magnitude ~20 after 30 layers: two reordered all-reduces per layer
        np.testing.assert_allclose(a, b, atol=2e-3, rtol=1e-4)
        assert (a.argmax(-1) == b.argmax(-1)).all()
