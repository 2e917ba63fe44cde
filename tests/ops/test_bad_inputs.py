"""Inputs that used to kill the process (SIGSEGV) must raise a clear error instead, or, where the
checks live on the device, finish without touching memory outside the tensors. Each case runs in a
fresh interpreter, so a crash fails the test instead of taking pytest down."""
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch

from fsgen_engine.ops._dispatch import available_backends

PREAMBLE = textwrap.dedent("""
    import torch
    from fsgen_engine import ops
    meta = torch.empty(2, 8, device="meta")

    def paged(backend, page=0, seq_len=4, cu=(0, 1), n_pages=1):
        q = torch.randn(1, 2, 64)
        kc = torch.randn(n_pages, 4, 1, 64)
        pt = torch.tensor([[page]], dtype=torch.int32)
        return ops.paged_attention(q, kc, kc.clone(), pt, torch.tensor([seq_len], dtype=torch.int32),
                                   torch.tensor(cu, dtype=torch.int32), scale=0.125, backend=backend)
""")

META_RE = r"is on device 'meta'; the ops run on cpu or cuda tensors"
CASES = {
    "token_stats_meta": ("ops.token_stats(meta)", META_RE),
    "sample_meta": ("ops.sample(meta)", META_RE),
    "sample_meta_greedy_cpu": ("ops.sample(meta, temperature=0.0, backend='cpu')", META_RE),
    "fuse_logits_meta": ("ops.fuse_logits(meta, meta, method='contrastive')", META_RE),
    "verify_meta": ("ops.verify(torch.zeros(2, 1, dtype=torch.int64, device='meta'), torch.empty(2, 2, 8, "
                    "device='meta'))", META_RE),
    "paged_page_1e8": ("paged('cpu', page=10**8)", r"page_table\[0, 0\]=100000000 is not a page of the cache"),
    "paged_seq_len_1e6": ("paged('cpu', seq_len=10**6)", r"seq_lens\[0\]=1000000 is out of range \[1, 4\]"),
    "paged_negative_page": ("paged('cpu', page=-3)", r"page_table\[0, 0\]=-3 is not a page"),
    "paged_cu_past_q": ("paged('cpu', cu=(0, 5))", r"cu_q_lens must run from 0 to at most the 1 query rows"),
    "paged_seq_shorter_than_queries": ("paged('cpu', seq_len=0)", r"seq_lens\[0\]=0 is out of range \[1, 4\]"),
}


def run_case(code: str) -> subprocess.CompletedProcess:
    body = textwrap.indent(textwrap.dedent(code).strip(), "    ")
    script = PREAMBLE + f"try:\n{body}\nexcept (ValueError, TypeError) as e:\n" \
        "    print('RAISED', type(e).__name__, e)\nelse:\n    print('RETURNED')\n"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONFAULTHANDLER": "1"})


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_instead_of_crashing(case):
    code, pattern = CASES[case]
    if case.startswith("paged") and "cpu" not in available_backends(torch.device("cpu"), native="paged_attention",
                                                                    triton_kernel=False):
        pytest.skip("the C++ paged attention is not built")
    proc = run_case(code)
    assert proc.returncode == 0, f"{case}: the process died (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
    assert "RAISED ValueError" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert re.search(pattern, proc.stdout), proc.stdout


@pytest.mark.skipif("triton" not in available_backends(torch.device("cpu"), native=None, triton_kernel=True),
                    reason="Triton interpreter not available")
def test_triton_bounds_are_checked_on_device():
    # The Triton kernels cannot raise without a host sync: out-of-range page ids, lengths and store
    # slots never read or write outside the tensors (the interpreter would crash on such an access).
    proc = run_case("""
        q = torch.randn(1, 2, 64)
        kc, vc = torch.randn(2, 4, 1, 64), torch.randn(2, 4, 1, 64)
        pt = torch.tensor([[1, 10**8]], dtype=torch.int32)   # second page id is not a page
        for seq_len in (8, 10**6):                           # 10**6 keys: far past the 2-page table row
            out = ops.paged_attention(q, kc, vc, pt, torch.tensor([seq_len], dtype=torch.int32),
                                      torch.tensor([0, 1], dtype=torch.int32), scale=0.125, backend="triton",
                                      max_seq_len=8)
            assert out.shape == q.shape and bool(out.isfinite().all())
        out = ops.paged_attention(q, kc, vc, pt, torch.tensor([8], dtype=torch.int32),
                                  torch.tensor([0, 5], dtype=torch.int32), scale=0.125, backend="triton")
        slots = torch.tensor([10**7, 3])
        k = torch.randn(2, 1, 64)
        kc2 = torch.zeros(2, 4, 1, 64)
        ops.store_kv(k, k, kc2, kc2.clone(), slots, backend="triton")   # slot 10**7 is skipped
        assert torch.equal(kc2[0, 3], k[1]) and kc2.count_nonzero() == 64
    """)
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert "RETURNED" in proc.stdout, proc.stdout + proc.stderr[-2000:]


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_debug_flag_checks_bounds_on_host(backend, monkeypatch):
    from fsgen_engine import ops

    if backend not in available_backends(torch.device("cpu"), native=None, triton_kernel=True):
        pytest.skip(f"{backend} not available")
    monkeypatch.setenv("FSGEN_CHECK_BOUNDS", "1")
    q, kc = torch.randn(1, 2, 64), torch.randn(1, 4, 1, 64)
    one = torch.tensor([0, 1], dtype=torch.int32)
    for page, seq_len, cu, match in [(10**8, 4, one, r"page_table\[0, 0\]=100000000 is not a page of the cache"),
                                     (0, 10**6, one, r"seq_lens\[0\]=1000000 is out of range \[1, 4\]"),
                                     (0, 4, torch.tensor([0, 5], dtype=torch.int32), r"cu_q_lens=\[0, 5\]")]:
        with pytest.raises(ValueError, match=match):
            ops.paged_attention(q, kc, kc, torch.tensor([[page]], dtype=torch.int32),
                                torch.tensor([seq_len], dtype=torch.int32), cu, scale=0.125, backend=backend)


def test_native_entry_points_take_keywords_only():
    from fsgen_engine.ops._native import native

    mod = native()
    if mod is None:
        pytest.skip("fsgen_engine._C is not built")
    for name in ("token_stats_cpu", "fuse_logits_cpu", "sample_cpu", "verify_cpu", "paged_attention_cpu"):
        fn = getattr(mod, name)
        with pytest.raises(TypeError):
            fn(0, 1, 2, 3, 4, 5, 6)  # positional integers are refused: no argument can be shifted by one
        assert "*," in fn.__doc__.splitlines()[0], fn.__doc__  # pybind11 shows the keyword-only marker
