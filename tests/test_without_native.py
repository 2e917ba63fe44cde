"""The package must work when the native extension ``fsgen_engine._C`` is missing (no compiler, a
failed build, a wheel without it): ``backend="auto"`` then falls back to the reference backend on CPU.

The check runs in a fresh interpreter where a meta-path finder makes ``fsgen_engine._C``
unimportable before ``fsgen_engine`` is imported (``ops._native.native()`` caches its answer, so it
cannot be done in the test process). Every op is called with ``backend="auto"`` on small CPU
tensors and compared with its reference function inside the subprocess.
"""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(r'''
    import importlib.abc
    import sys

    class _NoNative(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "fsgen_engine._C":
                raise ImportError("fsgen_engine._C disabled by test_without_native")
            return None

    sys.meta_path.insert(0, _NoNative())

    import torch
    from fsgen_engine import ops
    from fsgen_engine.ops._dispatch import choose_backend
    from fsgen_engine.ops._native import native
    from fsgen_engine.ops.fuse_logits import resolve_weights
    from fsgen_engine.reference.fuse_logits import fuse_logits_reference
    from fsgen_engine.reference.paged_attention import paged_attention_reference
    from fsgen_engine.reference.store_kv import store_kv_reference
    from fsgen_engine.reference.token_stats import token_stats_reference
    from fsgen_engine.reference.verify import verify_reference

    try:
        import fsgen_engine._C  # noqa: F401
    except ImportError:
        pass
    else:
        raise AssertionError("the finder did not block fsgen_engine._C")
    assert native() is None, "native() should report the extension as missing"
    cpu = torch.device("cpu")
    for op in ("token_stats", "fuse_logits", "sample", "verify"):
        got = choose_backend(op, cpu, "auto", native=op)
        assert got == "reference", f"{op}: auto picked {got!r} without _C"

    torch.manual_seed(0)
    B, V = 3, 257
    x = torch.randn(B, V) * 3

    st = ops.token_stats(x, backend="auto")
    for name, got, want in zip(st._fields, st, token_stats_reference(x)):
        torch.testing.assert_close(got, want, msg=f"token_stats.{name}")

    small = torch.randn(B, V) * 3
    torch.testing.assert_close(ops.fuse_logits(x, small, method="contrastive", backend="auto"),
                               fuse_logits_reference(x, small, None, *resolve_weights("contrastive")))

    tok = ops.sample(x, temperature=0.0, backend="auto")
    assert torch.equal(tok, x.argmax(dim=-1)), (tok, x.argmax(dim=-1))

    K = 3
    logits = torch.randn(B, K + 1, V) * 3
    draft = logits[:, :K].argmax(-1)
    draft[1, 1] = (draft[1, 1] + 1) % V  # one row rejects mid-way
    nd = torch.full((B,), K, dtype=torch.int64)
    acc, nxt = ops.verify(draft, logits, num_draft=nd, temperature=0.0, backend="auto")
    zero, topk, one = torch.zeros(B), torch.zeros(B, dtype=torch.int64), torch.ones(B)
    want_acc, want_nxt = verify_reference(draft, logits, None, nd, zero, topk, one, zero)
    assert torch.equal(acc, want_acc) and torch.equal(nxt, want_nxt), (acc, want_acc, nxt, want_nxt)
    assert acc.tolist()[1] == 1

    P, S, HKV, H, D = 6, 4, 2, 4, 64
    k = torch.randn(5, HKV, D)
    v = torch.randn(5, HKV, D)
    slots = torch.tensor([3, 0, -1, 17, 9])
    kc, vc = torch.zeros(P, S, HKV, D), torch.zeros(P, S, HKV, D)
    kc_ref, vc_ref = kc.clone(), vc.clone()
    ops.store_kv(k, v, kc, vc, slots, backend="auto")
    store_kv_reference(k, v, kc_ref, vc_ref, slots)
    assert torch.equal(kc, kc_ref) and torch.equal(vc, vc_ref)

    kc, vc = torch.randn(P, S, HKV, D), torch.randn(P, S, HKV, D)
    page_table = torch.tensor([[4, 1, 0], [2, 5, 3]], dtype=torch.int32)
    seq_lens = torch.tensor([9, 6], dtype=torch.int32)
    cu = torch.tensor([0, 1, 3], dtype=torch.int32)  # decode row + a 2-token verify row
    q = torch.randn(3, H, D)
    out = ops.paged_attention(q, kc, vc, page_table, seq_lens, cu, scale=D ** -0.5, backend="auto")
    want = paged_attention_reference(q, kc, vc, page_table, seq_lens, cu, scale=D ** -0.5)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    print("all ops ok without fsgen_engine._C")
''')


def test_ops_work_without_native_extension():
    env = {k: v for k, v in os.environ.items() if k != "FSGEN_BACKEND"}  # test the auto choice itself
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, f"subprocess failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert "all ops ok" in proc.stdout
