"""ops.paged_attention against the reference, and the reference against dense float64 attention."""
import math

import pytest
import torch

from fsgen_engine.ops._dispatch import available_backends

from fsgen_engine.ops import paged_attention
from fsgen_engine.ops.paged_attention import flash_available
from fsgen_engine.reference.paged_attention import paged_attention_padded, paged_attention_reference

TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def make_case(q_lens, kv_lens, *, page_size, H, Hkv, D, dtype=torch.float32, device="cpu", spare_pages=3):
    """Unpaged K/V per sequence scattered into randomly permuted pages (plus unused garbage pages)."""
    B = len(q_lens)
    n_pages = [-(-L // page_size) for L in kv_lens]
    P = sum(n_pages) + spare_pages
    perm = torch.randperm(P).tolist()
    k_cache = torch.randn(P, page_size, Hkv, D, dtype=dtype) * 10  # garbage outside the sequences
    v_cache = torch.randn(P, page_size, Hkv, D, dtype=dtype) * 10
    page_table = torch.full((B, max(n_pages) + 1), 7 % P, dtype=torch.int32)
    ks, vs, i = [], [], 0
    for b, L in enumerate(kv_lens):
        pages = perm[i:i + n_pages[b]]
        i += n_pages[b]
        page_table[b, :len(pages)] = torch.tensor(pages, dtype=torch.int32)
        k, v = torch.randn(L, Hkv, D, dtype=dtype), torch.randn(L, Hkv, D, dtype=dtype)
        for t in range(L):
            k_cache[pages[t // page_size], t % page_size] = k[t]
            v_cache[pages[t // page_size], t % page_size] = v[t]
        ks.append(k)
        vs.append(v)
    cu = torch.zeros(B + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(q_lens), 0)
    q = torch.randn(int(cu[-1]), H, D, dtype=dtype)
    seq_lens = torch.tensor(kv_lens, dtype=torch.int32)
    dev = dict(q=q, k_cache=k_cache, v_cache=v_cache, page_table=page_table, seq_lens=seq_lens, cu_q_lens=cu)
    return {n: t.to(device) for n, t in dev.items()}, ks, vs


def dense_f64(q, ks, vs, cu, scale, causal):
    out = torch.empty(q.shape, dtype=torch.float64)
    H = q.shape[1]
    for b, (k, v) in enumerate(zip(ks, vs)):
        qs, qe = int(cu[b]), int(cu[b + 1])
        L, Hkv = k.shape[0], k.shape[1]
        kk = k.double().repeat_interleave(H // Hkv, dim=1)        # [L, H, D]
        vv = v.double().repeat_interleave(H // Hkv, dim=1)
        s = torch.einsum("qhd,khd->hqk", q[qs:qe].double().cpu(), kk) * scale
        if causal:
            qpos = torch.arange(L - (qe - qs), L)
            s = s.masked_fill(torch.arange(L)[None, None, :] > qpos[None, :, None], -math.inf)
        out[qs:qe] = torch.einsum("hqk,khd->qhd", s.softmax(-1), vv)
    return out


@pytest.mark.parametrize("page_size", [1, 4, 16])
@pytest.mark.parametrize("causal", [True, False])
def test_reference_matches_dense_float64(page_size, causal):
    args, ks, vs = make_case([1, 4, 9, 1], [7, 13, 9, 40], page_size=page_size, H=4, Hkv=2, D=64)
    scale = 0.125
    want = dense_f64(args["q"], ks, vs, args["cu_q_lens"], scale, causal)
    got = paged_attention_reference(**args, scale=scale, causal=causal)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)
    got = paged_attention_padded(**args, scale=scale, causal=causal)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("q_lens,kv_lens", [([1] * 5, [1, 3, 17, 8, 33]), ([4, 4], [4, 21]), ([1, 5, 30], [9, 5, 31])])
def test_padded_matches_reference(dtype, q_lens, kv_lens):
    args, _, _ = make_case(q_lens, kv_lens, page_size=4, H=8, Hkv=2, D=80, dtype=dtype)
    want = paged_attention_reference(**args, scale=0.1)
    got = paged_attention_padded(**args, scale=0.1)
    torch.testing.assert_close(got.float(), want.float(), atol=TOL[dtype], rtol=TOL[dtype])


TRITON_CASES = [
    # (q_lens, kv_lens, page_size, H, Hkv, D, dtype, causal, splits)
    ([1, 3, 9], [5, 12, 9], 4, 4, 2, 64, torch.float32, True, None),   # decode + K+1 + full prefill
    ([1, 1, 2], [33, 2, 19], 16, 8, 1, 80, torch.float16, True, None),  # MQA, page 16
    ([2, 5], [6, 30], 1, 6, 3, 96, torch.bfloat16, True, None),          # page 1, group 2
    ([1, 4], [40, 17], 4, 2, 2, 128, torch.float32, False, 3),           # split KV, non-causal
    ([1, 2, 1], [50, 20, 3], 16, 8, 2, 64, torch.bfloat16, True, 4),     # split KV, causal
]


@pytest.mark.parametrize("case", TRITON_CASES, ids=lambda c: f"D{c[5]}-{str(c[6])[6:]}-S{c[2]}-split{c[8]}")
def test_triton_matches_reference(case, device):
    from fsgen_engine.kernels.paged_attention import paged_attention_triton
    q_lens, kv_lens, S, H, Hkv, D, dtype, causal, splits = case
    args, _, _ = make_case(q_lens, kv_lens, page_size=S, H=H, Hkv=Hkv, D=D, dtype=dtype, device=device)
    want = paged_attention_reference(**args, scale=D ** -0.5, causal=causal)
    got = paged_attention_triton(**args, scale=D ** -0.5, causal=causal, max_q_len=max(q_lens),
                                 max_seq_len=max(kv_lens), num_splits=splits)
    torch.testing.assert_close(got.float(), want.float(), atol=TOL[dtype], rtol=TOL[dtype])


CPU_CASES = [
    # (q_lens, kv_lens, page_size, H, Hkv, D, dtype, causal, window)
    ([1, 3, 9], [5, 12, 9], 4, 4, 2, 64, torch.float32, True, 0),      # decode + K+1 + full prefill
    ([1, 1, 2], [33, 2, 19], 16, 7, 1, 80, torch.float16, True, 0),    # MQA, group 7, page 16
    ([2, 5], [6, 70], 1, 6, 3, 37, torch.bfloat16, True, 0),            # page 1, odd head dim
    ([1, 4], [40, 17], 4, 2, 2, 128, torch.float32, False, 0),          # non-causal
    ([1, 6, 1], [50, 20, 3], 4, 8, 2, 64, torch.float32, True, 5),      # sliding window
    ([3, 1], [45, 9], 16, 4, 4, 96, torch.bfloat16, False, 3),          # window, non-causal
    ([1], [1], 4, 2, 1, 8, torch.float32, True, 1),                     # one key, window 1
]


@pytest.mark.skipif("cpu" not in available_backends(torch.device("cpu"), native="paged_attention",
                                                    triton_kernel=False), reason="C++ extension not built")
@pytest.mark.parametrize("case", CPU_CASES, ids=lambda c: f"D{c[5]}-{str(c[6])[6:]}-S{c[2]}-w{c[8]}")
def test_cpu_kernel_matches_reference(case):
    q_lens, kv_lens, S, H, Hkv, D, dtype, causal, window = case
    args, _, _ = make_case(q_lens, kv_lens, page_size=S, H=H, Hkv=Hkv, D=D, dtype=dtype)
    # q as a strided view (rows of a wider tensor): the kernel takes any row/head stride
    wide = torch.randn(args["q"].shape[0], 2 * H, D, dtype=dtype)
    wide[:, :H] = args["q"]
    args["q"] = wide[:, :H]
    want = paged_attention_reference(**args, scale=D ** -0.5, causal=causal, window=window)
    got = paged_attention(**args, scale=D ** -0.5, causal=causal, window=window, backend="cpu")
    assert got.dtype == dtype and got.shape == args["q"].shape
    torch.testing.assert_close(got.float(), want.float(), atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("backend", ["auto", "triton", "cpu", "reference"])
def test_op_backends(backend, device):
    if backend == "cpu" and (device != "cpu" or "cpu" not in available_backends(
            torch.device("cpu"), native="paged_attention", triton_kernel=False)):
        pytest.skip("the C++ backend runs CPU tensors of a built extension")
    args, ks, vs = make_case([1, 3], [10, 6], page_size=4, H=4, Hkv=4, D=64, device=device)
    want = dense_f64(args["q"].cpu(), ks, vs, args["cu_q_lens"].cpu(), 0.125, True)
    got = paged_attention(**args, scale=0.125, backend=backend)
    torch.testing.assert_close(got.double().cpu(), want, atol=1e-4, rtol=1e-4)
    got2 = paged_attention(**args, scale=0.125, max_q_len=3, max_seq_len=10, backend=backend)
    torch.testing.assert_close(got2, got)


@pytest.mark.skipif(not (flash_available() and torch.cuda.is_available()), reason="flash-attn not importable / no GPU")
@pytest.mark.parametrize("window", [0, 100])
def test_flash_backend(window):
    args, _, _ = make_case([2, 2], [300, 520], page_size=256, H=8, Hkv=2, D=128, dtype=torch.float16, device="cuda")
    want = paged_attention_reference(**args, scale=0.1, window=window)
    got = paged_attention(**args, scale=0.1, window=window, backend="flash")
    torch.testing.assert_close(got.float(), want.float(), atol=4e-3, rtol=4e-3)


def test_flash_unavailable_is_clear_error():
    if flash_available() and torch.cuda.is_available():
        pytest.skip("flash-attn present")
    args, _, _ = make_case([1], [3], page_size=4, H=2, Hkv=2, D=64)
    with pytest.raises(ValueError, match="flash"):
        paged_attention(**args, scale=0.1, backend="flash")


def test_validation_errors():
    args, _, _ = make_case([1, 2], [3, 5], page_size=4, H=4, Hkv=2, D=64)

    def call(**over):
        a = dict(args)
        a.update(over)
        return paged_attention(**a, scale=over.pop("scale", 0.1))

    with pytest.raises(TypeError, match="page_table"):
        call(page_table=args["page_table"].long())
    with pytest.raises(TypeError, match="seq_lens"):
        call(seq_lens=args["seq_lens"].long())
    with pytest.raises(TypeError, match="cu_q_lens"):
        call(cu_q_lens=args["cu_q_lens"].float())
    with pytest.raises(TypeError, match="k_cache"):
        call(k_cache=args["k_cache"].half())
    with pytest.raises(ValueError, match="multiple"):
        call(q=torch.randn(3, 3, 64))
    with pytest.raises(ValueError, match="head_dim"):
        call(q=torch.randn(3, 4, 32), k_cache=torch.randn(5, 4, 2, 64), v_cache=torch.randn(5, 4, 2, 64))
    with pytest.raises(ValueError, match="cu_q_lens"):
        call(cu_q_lens=args["cu_q_lens"][:2])
    with pytest.raises(ValueError, match="page_table"):
        call(page_table=args["page_table"][:1])
    with pytest.raises(ValueError, match="v_cache"):
        call(v_cache=args["v_cache"][:2])
    with pytest.raises(ValueError, match="3-D"):
        call(q=args["q"][0])
    with pytest.raises(ValueError, match="backend"):
        paged_attention(**args, scale=0.1, backend="nope")
    with pytest.raises(ValueError, match="scale"):
        paged_attention(**args, scale=-1.0)
    for bad in (-1, 2.0, True, "4", None):
        with pytest.raises(ValueError, match=rf"window={bad!r} must be a non-negative int.*0 for full"):
            paged_attention(**args, scale=0.1, window=bad)


def test_unsupported_triton_head_dim_is_a_clear_error_and_auto_falls_back():
    args, _, _ = make_case([1, 2], [3, 5], page_size=4, H=4, Hkv=2, D=64)
    q = torch.randn(3, 4, 16)
    P = args["k_cache"].shape[0]
    kc, vc = torch.randn(P, 4, 2, 16), torch.randn(P, 4, 2, 16)
    a = dict(args, q=q, k_cache=kc, v_cache=vc)
    ref = paged_attention(**a, scale=0.25, backend="reference")
    torch.testing.assert_close(paged_attention(**a, scale=0.25), ref)
    if "triton" in available_backends(q.device, native=None, triton_kernel=True):
        with pytest.raises(ValueError, match="head_dim=16 is not supported by the Triton kernel"):
            paged_attention(**a, scale=0.25, backend="triton")


# ---------------------------------------------------------------- sliding window


def dense_window_sdpa(q, ks, vs, cu, scale, causal, window):
    """Sliding-window attention from its definition, on the unpaged K/V: query at position i sees key j
    iff i - j < window (and j <= i when causal); float64 SDPA with that boolean mask."""
    out = torch.empty(q.shape, dtype=torch.float64)
    for b, (k, v) in enumerate(zip(ks, vs)):
        qs, qe = int(cu[b]), int(cu[b + 1])
        L, group = k.shape[0], q.shape[1] // k.shape[1]
        mask = torch.zeros(qe - qs, L, dtype=torch.bool)
        for r in range(qe - qs):
            i = L - (qe - qs) + r
            for j in range(L):
                mask[r, j] = (j <= i or not causal) and i - j < window
        kk = k.double().repeat_interleave(group, dim=1).transpose(0, 1)
        vv = v.double().repeat_interleave(group, dim=1).transpose(0, 1)
        o = torch.nn.functional.scaled_dot_product_attention(q[qs:qe].double().transpose(0, 1), kk, vv,
                                                             attn_mask=mask, scale=scale)
        out[qs:qe] = o.transpose(0, 1)
    return out


@pytest.mark.parametrize("window", [1, 3, 16])
@pytest.mark.parametrize("page_size", [1, 4])
@pytest.mark.parametrize("causal", [True, False])
def test_window_reference_matches_dense_sdpa(window, page_size, causal):
    args, ks, vs = make_case([1, 4, 9, 1], [7, 13, 9, 40], page_size=page_size, H=4, Hkv=2, D=64)
    want = dense_window_sdpa(args["q"], ks, vs, args["cu_q_lens"], 0.125, causal, window)
    for fn in (paged_attention_reference, paged_attention_padded):
        got = fn(**args, scale=0.125, causal=causal, window=window)
        torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)
    full = paged_attention_reference(**args, scale=0.125, causal=causal)
    assert not torch.allclose(full, got, atol=1e-3)  # the window hid keys of the 40-token sequence


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("window", [1, 5])
def test_window_padded_matches_reference(dtype, window):
    args, _, _ = make_case([1, 5, 30, 2], [9, 5, 31, 17], page_size=4, H=8, Hkv=2, D=80, dtype=dtype)
    want = paged_attention_reference(**args, scale=0.1, window=window)
    got = paged_attention_padded(**args, scale=0.1, window=window)
    torch.testing.assert_close(got.float(), want.float(), atol=TOL[dtype], rtol=TOL[dtype])


WINDOW_CASES = [
    # (q_lens, kv_lens, page_size, H, Hkv, D, dtype, causal, splits, window)
    ([1, 4, 7], [23, 18, 12], 4, 4, 2, 64, torch.float32, True, None, 5),    # decode + K+1 + ragged extend
    ([1, 1, 1], [9, 30, 2], 1, 4, 1, 64, torch.float32, True, None, 1),       # W=1: each query sees itself
    ([1, 2, 1], [50, 20, 3], 16, 8, 2, 64, torch.float16, True, 4, 3),        # split KV, mostly empty splits
    ([12, 1], [40, 33], 4, 4, 2, 64, torch.bfloat16, True, 3, 16),            # extend spans tiles, split KV
    ([3, 1], [35, 6], 4, 4, 4, 64, torch.float32, False, 3, 5),               # non-causal: open right side
    ([5, 1], [5, 3], 16, 4, 2, 64, torch.float32, True, 2, 16),               # window longer than the context
]


@pytest.mark.parametrize("case", WINDOW_CASES, ids=lambda c: f"W{c[9]}-S{c[2]}-split{c[8]}-causal{c[7]}")
def test_window_triton_matches_reference(case, device):
    from fsgen_engine.kernels.paged_attention import paged_attention_triton
    q_lens, kv_lens, S, H, Hkv, D, dtype, causal, splits, window = case
    args, _, _ = make_case(q_lens, kv_lens, page_size=S, H=H, Hkv=Hkv, D=D, dtype=dtype, device=device)
    want = paged_attention_reference(**args, scale=D ** -0.5, causal=causal, window=window)
    got = paged_attention_triton(**args, scale=D ** -0.5, causal=causal, window=window, max_q_len=max(q_lens),
                                 max_seq_len=max(kv_lens), num_splits=splits)
    torch.testing.assert_close(got.float(), want.float(), atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("splits", [None, 3])
def test_window_triton_skips_tiles_below_the_window(splits, device):
    """Keys in whole tiles before the window are never read: NaN there (which would poison ``p @ v``
    even under a zero weight) leaves the output finite and equal to the clean result."""
    from fsgen_engine.kernels.paged_attention import paged_attention_triton
    args, _, _ = make_case([1, 2], [64, 40], page_size=4, H=4, Hkv=2, D=64, device=device)
    want = paged_attention_reference(**args, scale=0.125, window=5)
    poisoned = dict(args, v_cache=args["v_cache"].clone(), k_cache=args["k_cache"].clone())
    for b, first_seen in enumerate([64 - 5, 40 - 2 - 5 + 1]):
        below = first_seen // 16 * 16  # keys of the 16-key tiles wholly below the window
        pages = args["page_table"][b, : below // 4].long()
        poisoned["k_cache"][pages] = float("nan")
        poisoned["v_cache"][pages] = float("nan")
    got = paged_attention_triton(**poisoned, scale=0.125, causal=True, window=5, max_q_len=2, max_seq_len=64,
                                 num_splits=splits, block_n=16)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("backend", ["auto", "triton", "reference"])
def test_window_op_backends(backend, device):
    args, ks, vs = make_case([1, 3, 6], [20, 9, 6], page_size=4, H=4, Hkv=2, D=64, device=device)
    want = dense_window_sdpa(args["q"].cpu(), ks, vs, args["cu_q_lens"].cpu(), 0.125, True, 4)
    got = paged_attention(**args, scale=0.125, window=4, backend=backend)
    torch.testing.assert_close(got.double().cpu(), want, atol=1e-4, rtol=1e-4)
    # A window at least the longest context hides nothing: the same as full attention.
    full = paged_attention(**args, scale=0.125, backend=backend)
    torch.testing.assert_close(paged_attention(**args, scale=0.125, window=20, backend=backend), full)
