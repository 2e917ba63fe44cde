"""Sharded models (models/tensor_parallel.py) over real gloo ranks: every family's logits at TP=2 and
TP=4 (4 heads / 2 KV heads: KV heads replicated at TP=4) equal the unsharded model's, over prefill,
ragged extends and decode on scattered pages; each rank reads only its blocks of the weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fsgen_engine.models import load_model
from fsgen_engine.models.tensor_parallel import TPShard, attention_heads, block, check_geometry
from tests.models._paged import PagedSeqs
from tests.models.conftest import FAMILIES, make_hf
from tests.tp._ranks import run_ranks

# one xdist worker runs the tensor-parallel tests in order: each spawns ranks of its own, and one
# spawned group per process is open at a time
pytestmark = pytest.mark.xdist_group("tp")

STEPS = [({0: [5, 7, 9, 11, 3], 1: [4, 4]}, "all"), ({0: [8], 1: [100, 17, 20]}, "all"), ({0: [1], 1: [2]}, "last")]
# fp32 logits of ~1: sharding reorders the sums of two all-reduces per layer (a few ulps per layer)
ATOL = 2e-5


def _run(model):
    s = PagedSeqs(model)
    return [s.step(new, logits=rows).numpy() for new, rows in STEPS]


def _shard_logits(rank, size, folders):
    return {kind: _run(load_model(path, tokenizer=False, tp=TPShard(rank, size))[0]) for kind, path in folders.items()}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for kind in FAMILIES:
        d = tmp_path_factory.mktemp(kind)
        make_hf(kind).save_pretrained(d, safe_serialization=True)
        out[kind] = str(d)
    return out


@pytest.mark.parametrize("size", [2, 4])
def test_every_family_matches_unsharded(folders, size):
    picked = folders if size == 2 else {k: folders[k] for k in ("llama", "qwen3", "neox")}
    got = run_ranks(size, _shard_logits, picked)
    for kind, path in picked.items():
        want = _run(load_model(path, tokenizer=False)[0])
        for step, (a, b) in enumerate(zip(got[kind], want)):
            assert a.shape == b.shape, (kind, step)
            np.testing.assert_allclose(a, b, atol=ATOL, rtol=0, err_msg=f"{kind} TP={size} step {step}")


def test_shard_holds_its_blocks_only(folders):
    full = load_model(folders["qwen2"], tokenizer=False)[0]
    # no process group is needed to build a shard (only to run it)
    parts = [load_model(folders["qwen2"], tokenizer=False, tp=TPShard(r, 2))[0] for r in range(2)]
    L0 = [p.weights["layers"][0] for p in parts]
    torch.testing.assert_close(torch.cat([L["wq"] for L in L0]), full.weights["layers"][0]["wq"], rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([L["w_down"] for L in L0], dim=1), full.weights["layers"][0]["w_down"],
                               rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([p.weights["lm_head"] for p in parts]), full.weights["lm_head"], rtol=0, atol=0)
    assert sum(p.num_parameters() for p in parts) < 1.2 * full.num_parameters()
    assert [p.num_kv_heads for p in parts] == [1, 1] and parts[0].vocab_size == full.vocab_size


def test_head_layout():
    # SmolLM2: 9 heads / 3 KV heads over 2 ranks: whole KV groups, 6 + 3 query heads
    assert [attention_heads(9, 3, r, 2) for r in range(2)] == [(0, 6, 0, 2), (6, 9, 2, 3)]
    # 4 heads / 2 KV heads over 4 ranks: each KV head on two ranks, its 2 query heads split between them
    assert [attention_heads(4, 2, r, 4) for r in range(4)] == [(0, 1, 0, 1), (1, 2, 0, 1), (2, 3, 1, 2), (3, 4, 1, 2)]
    assert [block(211, r, 2) for r in range(2)] == [(0, 106), (106, 211)]


@pytest.mark.parametrize("heads,kv,size,match", [(4, 2, 3, "cannot be split over 3"), (9, 3, 4, "cannot be split"),
                                                 (4, 4, 8, "cannot be split")])
def test_bad_geometry_is_a_clear_error(heads, kv, size, match):
    with pytest.raises(ValueError, match=match):
        check_geometry("large", heads, kv, 1000, 100, size)
