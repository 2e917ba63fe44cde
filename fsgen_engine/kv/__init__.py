"""Paged KV memory shared by all models of an engine.

One pool, one page size, one free list: pages flow to whichever model (small, large, fine-tuned)
needs them. Each model has its own per-layer K/V storage (``ModelKVCache``, ``[P, S, Hkv, D]`` per
layer) indexed by the same page ids; every (model, sequence) pair has a host-side ``PageTable``.

API (``kv = KVPool.create(...)``)::

    specs = {"small": KVModelSpec(num_layers, num_kv_heads, head_dim, dtype, device), "large": ...}
    kv = KVPool.create(specs, memory="2GiB")         # or num_pages=..., page_size=...;
                                                    # default FSGEN_KV_MEMORY / FSGEN_PAGE_SIZE
    cache = kv.cache("small")                        # ModelKVCache for model.forward(batch, cache)
    batch = kv.prepare("small", [s1, s2], [[t1], [t2, t3]], logits="last")   # -> ForwardBatch
            # logits: "last" | ("last_n", n) | "all" | None; token lists may be 1-D tensors
            # page_table_width=W pads the page table (CUDA graphs)
    logits = model.forward(batch, cache)
    kv.truncate("large", s1, length)                 # rollback rejected draft tokens (frees whole pages)
    kv.free_sequence(s1)                             # all models (model_id=... for one)
    kv.fork(s1, s1b)                                 # n>1 sampling: pages shared, copy on write
    kv.seq_len("small", s1); kv.num_free_pages; kv.can_allocate("small", seqs, counts)

Sequences are created implicitly on first ``prepare``. ``prepare``/``allocate`` raise
``KVPoolExhausted`` (pages needed/free, how to raise the budget) and leave the pool unchanged.
``kv.allocate(model_id, seq_ids, counts)`` grows tables without building a batch.
"""
from fsgen_engine.kv.allocator import KVPoolExhausted, PageAllocator
from fsgen_engine.kv.cache import ModelKVCache
from fsgen_engine.kv.pool import KVModelSpec, KVPool, PageTable
from fsgen_engine.kv.prepare import prepare_batch

__all__ = ["KVPool", "KVModelSpec", "KVPoolExhausted", "ModelKVCache", "PageAllocator", "PageTable", "prepare_batch"]
