"""KVPool.prepare: the ForwardBatch fields, and a simulated model (store_kv + paged_attention over the
prepared batch) against dense attention over each sequence's token history, through forks and rollbacks."""
import math
import random

import numpy as np
import pytest
import torch

from fsgen_engine.kv import KVModelSpec, KVPool, KVPoolExhausted
from fsgen_engine.ops import paged_attention, store_kv


def test_fields_by_hand():
    kv = KVPool({"m": KVModelSpec(1, 1, 64)}, num_pages=10, page_size=4)
    b = kv.prepare("m", ["a", "b"], [[1, 2, 3, 4, 5], [7]])
    pa, pb = kv.page_table("m", "a").pages, kv.page_table("m", "b").pages
    assert b.input_ids.tolist() == [1, 2, 3, 4, 5, 7] and b.input_ids.dtype == torch.int64
    assert b.positions.tolist() == [0, 1, 2, 3, 4, 0]
    assert b.slot_mapping.tolist() == [pa[0] * 4 + i for i in range(4)] + [pa[1] * 4, pb[0] * 4]
    assert b.page_table.dtype == torch.int32 and b.page_table.shape == (2, 2)
    assert b.page_table[0].tolist() == pa and b.page_table[1, 0] == pb[0]
    assert b.seq_lens.tolist() == [5, 1] and b.cu_q_lens.tolist() == [0, 5, 6]
    assert b.logits_indices.tolist() == [4, 5] and (b.max_q_len, b.max_seq_len) == (5, 5)
    b = kv.prepare("m", ["b", "a"], [torch.tensor([8, 9]), [6, 6]], logits=("last_n", 2), page_table_width=4)
    assert b.positions.tolist() == [1, 2, 5, 6] and b.logits_indices.tolist() == [0, 1, 2, 3]
    assert b.page_table.shape == (2, 4) and b.input_ids.tolist() == [8, 9, 6, 6]
    assert kv.prepare("m", ["a"], [[1]], logits="all").logits_indices.tolist() == [0]
    assert kv.prepare("m", ["a"], [[1]], logits=None).logits_indices.numel() == 0


def test_errors_leave_state_unchanged():
    kv = KVPool({"m": KVModelSpec(1, 1, 64)}, num_pages=3, page_size=4)
    kv.prepare("m", ["a"], [[1] * 6])
    for bad, err in [(dict(logits=("last_n", 3)), ValueError), (dict(logits="first"), ValueError)]:
        with pytest.raises(err):
            kv.prepare("m", ["a", "b"], [[1, 2], [3]], **bad)
    with pytest.raises(KVPoolExhausted):
        kv.prepare("m", ["a", "b"], [[1, 2, 3], [3]])
    with pytest.raises(ValueError, match="no new tokens"):
        kv.prepare("m", ["a"], [[]])
    with pytest.raises(ValueError, match="duplicates"):
        kv.prepare("m", ["a", "a"], [[1], [2]])
    assert kv.seq_len("m", "a") == 6 and not kv.has_sequence("m", "b") and kv.num_free_pages == 1


def _dense(q, k, v, scale):
    # q [n, H, D] are the last n positions of k/v [L, Hkv, D]; causal; float64.
    L, n, H = k.shape[0], q.shape[0], q.shape[1]
    kk = k.double().repeat_interleave(H // k.shape[1], 1)
    vv = v.double().repeat_interleave(H // k.shape[1], 1)
    s = torch.einsum("qhd,khd->hqk", q.double(), kk) * scale
    s = s.masked_fill(torch.arange(L)[None, None] > torch.arange(L - n, L)[None, :, None], -math.inf)
    return torch.einsum("hqk,khd->qhd", s.softmax(-1), vv)


@pytest.mark.parametrize("page_size", [1, 4, 16])
def test_simulated_model_through_fork_and_rollback(page_size, device):
    H, Hkv, D = 4, 2, 64
    specs = {"small": KVModelSpec(1, Hkv, D, torch.float32, device), "large": KVModelSpec(2, Hkv, D, torch.float32, device)}
    kv = KVPool(specs, num_pages=64 // page_size + 40, page_size=page_size)
    rng = random.Random(page_size)
    hist = {}  # (model, seq) -> (k [L, Hkv, D], v) on cpu

    def step(model, seqs, counts):
        ids = [[rng.randrange(100) for _ in range(c)] for c in counts]
        batch = kv.prepare(model, seqs, ids, logits="all")
        N = batch.num_tokens
        k_new, v_new = torch.randn(N, Hkv, D), torch.randn(N, Hkv, D)
        q = torch.randn(N, H, D)
        cache = kv.cache(model)
        for layer in range(cache.num_layers):
            store_kv(k_new.to(device), v_new.to(device), cache.k[layer], cache.v[layer], batch.slot_mapping)
        out = paged_attention(q.to(device), cache.k[-1], cache.v[-1], batch.page_table, batch.seq_lens,
                              batch.cu_q_lens, scale=D ** -0.5, max_q_len=batch.max_q_len,
                              max_seq_len=batch.max_seq_len).cpu()
        cu = batch.cu_q_lens.tolist()
        for i, s in enumerate(seqs):
            k0, v0 = hist.get((model, s), (torch.zeros(0, Hkv, D), torch.zeros(0, Hkv, D)))
            k1, v1 = torch.cat([k0, k_new[cu[i]:cu[i + 1]]]), torch.cat([v0, v_new[cu[i]:cu[i + 1]]])
            hist[(model, s)] = (k1, v1)
            assert batch.positions[cu[i]:cu[i + 1]].tolist() == list(range(len(k0), len(k1)))
            torch.testing.assert_close(out[cu[i]:cu[i + 1]].double(), _dense(q[cu[i]:cu[i + 1]], k1, v1, D ** -0.5),
                                       atol=1e-4, rtol=1e-4)

    def rollback(model, s, length):
        kv.truncate(model, s, length)
        k, v = hist[(model, s)]
        hist[(model, s)] = (k[:length], v[:length])

    step("small", ["a", "b"], [7, 3])          # prefill
    step("large", ["a"], [5])
    for _ in range(3):
        step("small", ["a", "b"], [1, 1])      # decode
    kv.fork("a", "c")
    for m in ("small", "large"):
        hist[(m, "c")] = hist[(m, "a")]
    step("large", ["a", "c"], [5, 4])          # catch-up of both forks: copy on write of a shared page
    step("small", ["c", "a", "b"], [3, 1, 1])  # K+1 verification next to decodes
    rollback("small", "c", kv.seq_len("small", "c") - 2)
    rollback("large", "a", 6)
    step("small", ["c"], [1])
    step("large", ["a", "c"], [2, 1])
    kv.free_sequence("b")
    kv.check_invariants()
    for s in ("a", "c"):
        kv.free_sequence(s)
    assert kv.num_free_pages == kv.num_pages


def test_logits_last_n_rows():
    kv = KVPool({"m": KVModelSpec(1, 1, 64)}, num_pages=10, page_size=4)
    b = kv.prepare("m", ["x", "y", "z"], [[1] * 5, [2] * 3, [3] * 4], logits=("last_n", 3))
    assert b.logits_indices.tolist() == [2, 3, 4, 5, 6, 7, 9, 10, 11]
    assert np.all(np.diff(b.logits_indices.numpy()) > 0)
