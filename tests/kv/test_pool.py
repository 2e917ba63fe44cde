"""KVPool / PageAllocator: bookkeeping properties (hypothesis), copy on write, exhaustion, sizing."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsgen_engine.kv import KVModelSpec, KVPool, KVPoolExhausted, PageAllocator

SPECS = {"small": KVModelSpec(1, 1, 64), "large": KVModelSpec(2, 2, 64)}


def snapshot(kv):
    return ({m: {s: (list(t.pages), t.length) for s, t in tabs.items()} for m, tabs in kv.tables.items()},
            sorted(kv.allocator.free_pages()), [kv.allocator.refcount(p) for p in range(kv.num_pages)])


OPS = st.lists(st.tuples(st.sampled_from(["alloc", "truncate", "fork", "free", "free_one"]),
                         st.sampled_from(["small", "large"]), st.integers(0, 5), st.integers(0, 5),
                         st.integers(0, 23)), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, page_size=st.sampled_from([1, 3, 4]), num_pages=st.integers(1, 24))
def test_random_operations_keep_pages_balanced(ops, page_size, num_pages):
    kv = KVPool(SPECS, num_pages=num_pages, page_size=page_size)
    for op, model, s1, s2, n in ops:
        before = snapshot(kv)
        if op == "alloc":
            try:
                kv.allocate(model, [s1] if s1 == s2 else [s1, s2], [n] if s1 == s2 else [n, (n * 7) % 5])
            except KVPoolExhausted as e:
                assert e.needed > e.free
                assert snapshot(kv) == before, "a failed allocation changed the pool"
        elif op == "truncate":
            if kv.has_sequence(model, s1):
                kv.truncate(model, s1, min(n, kv.seq_len(model, s1)))
        elif op == "fork":
            if s1 != s2 and s2 not in kv.sequences():
                kv.fork(s1, s2)
        elif op == "free":
            kv.free_sequence(s1)
        else:
            kv.free_sequence(s1, model_id=model)
        kv.check_invariants()
    for s in list(kv.sequences()):
        kv.free_sequence(s)
    kv.check_invariants()
    assert kv.num_free_pages == num_pages


def test_allocator_double_free_and_alias_are_errors():
    a = PageAllocator(3, 4)
    (p,) = a.allocate(1)
    a.decref(p)
    with pytest.raises(RuntimeError, match="double free"):
        a.decref(p)
    with pytest.raises(RuntimeError, match="free"):
        a.incref(p)


def test_exhaustion_message_and_no_change():
    kv = KVPool(SPECS, num_pages=4, page_size=4)
    kv.allocate("small", ["a"], [10])                     # 3 pages
    before = snapshot(kv)
    with pytest.raises(KVPoolExhausted, match=r"need 2 page.*1 free of 4.*FSGEN_KV_MEMORY"):
        kv.allocate("large", ["a", "b"], [1, 4])
    assert snapshot(kv) == before
    kv.allocate("large", ["a"], [4])


def test_truncate_frees_whole_pages_and_validates():
    kv = KVPool(SPECS, num_pages=8, page_size=4)
    kv.allocate("large", ["a"], [10])
    kv.truncate("large", "a", 5)
    assert len(kv.page_table("large", "a").pages) == 2 and kv.num_free_pages == 6
    kv.truncate("large", "a", 4)
    assert kv.num_free_pages == 7
    with pytest.raises(ValueError, match="length=9"):
        kv.truncate("large", "a", 9)
    with pytest.raises(KeyError, match="unknown model"):
        kv.truncate("medium", "a", 1)


def test_fork_shares_pages_and_copies_on_write():
    kv = KVPool({"m": KVModelSpec(2, 1, 64)}, num_pages=8, page_size=4)
    kv.allocate("m", ["a"], [6])
    cache = kv.cache("m")
    for layer in range(2):
        cache.k[layer].normal_()
        cache.v[layer].normal_()
    kv.fork("a", "b")
    assert kv.page_table("m", "b").pages == kv.page_table("m", "a").pages
    assert kv.num_free_pages == 6
    shared_last = kv.page_table("m", "a").pages[-1]
    saved = [cache.k[layer][shared_last].clone() for layer in range(2)]
    kv.allocate("m", ["b"], [1])                          # b writes into the shared partial page: copy
    pb = kv.page_table("m", "b").pages
    assert pb[0] == kv.page_table("m", "a").pages[0] and pb[1] != shared_last
    for layer in range(2):
        torch.testing.assert_close(cache.k[layer][pb[1]], saved[layer])
    kv.allocate("m", ["a"], [2])                          # a now owns its last page alone: no copy
    assert kv.page_table("m", "a").pages[-1] == shared_last
    kv.check_invariants()
    with pytest.raises(ValueError, match="already exists"):
        kv.fork("a", "b")


def test_sizing_from_budget_and_env(monkeypatch):
    per_page = KVPool.bytes_per_page(SPECS, 16)
    assert per_page == 2 * 1 * 16 * 1 * 64 * 4 + 2 * 2 * 16 * 2 * 64 * 4
    kv = KVPool.create(SPECS, page_size=16, memory=10 * per_page + 5)
    assert kv.num_pages == 10 and kv.cache("large").k[1].shape == (10, 16, 2, 64)
    monkeypatch.setenv("FSGEN_KV_MEMORY", str(3 * KVPool.bytes_per_page(SPECS, 8)))
    monkeypatch.setenv("FSGEN_PAGE_SIZE", "8")
    kv = KVPool.create(SPECS)
    assert (kv.num_pages, kv.page_size) == (3, 8)
    assert KVPool.create(SPECS, num_pages=5, page_size=2).num_pages == 5
    with pytest.raises(ValueError, match="holds no page"):
        KVPool.create(SPECS, memory=100)
