"""ops.fuse_logits: every backend present against the float64 reference on the same (rounded) inputs."""
import math

import pytest
import torch

from fsgen_engine.ops._dispatch import available_backends
from fsgen_engine.ops.fuse_logits import fuse_logits, resolve_weights
from fsgen_engine.reference.fuse_logits import fuse_logits_reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# float32 arithmetic on rounded inputs vs float64 on the same values: a few float32 ulps
TOL = {torch.float32: (1e-6, 1e-5), torch.float16: (1e-6, 1e-5), torch.bfloat16: (1e-6, 1e-5)}
METHODS = [("contrastive", {}), ("contrastive_obrien", {}), ("proxy", {}),
           ("contrastive", {"alpha": 0.5, "beta": 1.5}), ("proxy", {"alpha": 0.3}),
           ("weighted", {"weights": (2.0, -1.0)}), ("weighted", {"weights": (1.0, 0.0, 0.5), "alpha": 1.0})]


def backends(device):
    return available_backends(torch.device(device), native="fuse_logits", triton_kernel=True)


def interpreted(backend, device):
    return backend == "triton" and device == "cpu"


def expected(large, small, small_ft, method, kw):
    w_l, w_s, w_f, log_alpha = resolve_weights(method, kw.get("alpha"), kw.get("beta"), kw.get("weights"))
    ref = fuse_logits_reference(large.cpu().double(), small.cpu().double(),
                                None if small_ft is None else small_ft.cpu().double(),
                                w_l, w_s, w_f, log_alpha)
    return ref, log_alpha


def assert_fused(out, large, ref, log_alpha, dtype):
    rtol, atol = TOL[dtype]
    out = out.cpu().double()
    assert out.shape == ref.shape
    v = ref.shape[1]
    if log_alpha != -math.inf:
        # float32 vs float64 may put a token sitting exactly on the cut-off on either side of it
        l64 = large[:, :v].cpu().double()
        thr = torch.where(l64.isnan(), -math.inf, l64).amax(-1, keepdim=True) + log_alpha
        differ = (out == -math.inf) != (ref == -math.inf)
        assert bool(((l64 - thr).abs()[differ] <= 1e-5 * (1 + thr.abs().expand_as(l64)[differ])).all())
        out = torch.where(differ, ref, out)
    torch.testing.assert_close(out, ref, rtol=rtol, atol=atol, equal_nan=True)


SIZES = [(1, 7), (3, 7), (64, 7), (1, 1000), (3, 1000), (64, 1000), (3, 5000), (1, 32000), (64, 32000),
         (3, 49152), (1, 151936), (8, 151936)]
# numpy warns about NaN intermediates the interpreter computes for NaN/inf inputs
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,V", SIZES)
def test_matches_reference(device, B, V, dtype):
    large = (torch.randn(B, V) * 3).to(dtype).to(device)
    small = (torch.randn(B, V) * 3).to(dtype).to(device)
    small_ft = (torch.randn(B, V) * 3).to(dtype).to(device)
    for method, kw in (METHODS if B * V <= 20_000 else METHODS[:3]):  # big shapes: the presets only
        ref, log_alpha = expected(large, small, small_ft, method, kw)
        for backend in backends(device):
            if interpreted(backend, device) and (V > 5000 or B > 3):
                continue
            if backend == "reference" and B * V > 20_000:
                continue
            out = fuse_logits(large, small, small_ft, method=method, backend=backend, **kw)
            assert out.dtype == torch.float32 and out.device == large.device
            assert_fused(out, large, ref, log_alpha, dtype)


@pytest.mark.parametrize("dtypes", [(torch.float32, torch.bfloat16, torch.float16),
                                    (torch.bfloat16, torch.float16, torch.float32)], ids=str)
@pytest.mark.parametrize("V", [1000, 32000])
def test_mixed_dtypes_vocab_sizes_and_strides(device, dtypes, V):
    # different padded vocab sizes (V' = min), different dtypes, strided rows of [B, T, V] slices
    B = 3
    large = (torch.randn(B, 2, V + 64) * 3).to(dtypes[0]).to(device)[:, -1, :]
    small = (torch.randn(B, V + 7) * 3).to(dtypes[1]).to(device)[:, 3:]
    small_ft = (torch.randn(B, V + 1) * 3).to(dtypes[2]).to(device)
    assert large.stride(0) != large.shape[1] and small.stride(0) != small.shape[1]
    for method, kw in METHODS:
        ref, log_alpha = expected(large, small, small_ft, method, kw)
        assert ref.shape == (B, V + 1)  # V' = min over every input passed
        for backend in backends(device):
            if interpreted(backend, device) and V > 5000:
                continue
            out = fuse_logits(large, small, small_ft, method=method, backend=backend, **kw)
            assert_fused(out, large, ref, log_alpha, torch.float32)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_special_values(device, dtype):
    V = 3000
    large = (torch.randn(5, V) * 3)
    small = (torch.randn(5, V) * 3)
    large[0, ::5] = -math.inf          # -inf tokens in large: masked (or -inf for proxy)
    small[1, ::7] = -math.inf          # -inf in small: -inf out, never NaN
    large[2, 10] = math.nan            # NaN ignored by the row max, NaN in its own position
    large[3, :] = -math.inf            # all -inf
    large[4, 17] = 50.0                # one dominant token: everything else masked
    large, small = large.to(dtype).to(device), small.to(dtype).to(device)
    for method, kw in METHODS[:2] + [("weighted", {"weights": (1.0, 0.0)})]:
        ref, log_alpha = expected(large, small, None, method, kw)
        assert not ref[:2].isnan().any() and ref[2].isnan().sum() == 1
        for backend in backends(device):
            out = fuse_logits(large, small, method=method, backend=backend, **kw)
            assert_fused(out, large, ref, log_alpha, dtype)
            assert out[4].isfinite().sum().item() == 1 and out[4].argmax().item() == 17


def test_presets_map_onto_weights(device):
    large, small, ft = (torch.randn(2, 50, device=device) for _ in range(3))
    a = fuse_logits(large, small, method="contrastive", beta=1.5)
    b = fuse_logits(large, small, method="contrastive_obrien", beta=0.5)  # FS-GEN beta 1.5 == O'Brien 0.5
    c = fuse_logits(large, small, method="weighted", weights=(1.5, -0.5))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    p = fuse_logits(large, small, ft, method="proxy")
    torch.testing.assert_close(p, large + (ft - small))
    # contrastive definition from the paper, in float64
    l64, s64 = large.double().cpu(), small.double().cpu()
    want = s64 + 0.5 * (l64 - s64)
    want[l64 < math.log(0.1) + l64.max(-1, keepdim=True).values] = -math.inf
    torch.testing.assert_close(fuse_logits(large, small, method="contrastive").double().cpu(), want)


def test_validation_errors():
    x, y = torch.randn(2, 10), torch.randn(2, 10)
    with pytest.raises(ValueError, match="method='proxy' needs small_ft"):
        fuse_logits(x, y, method="proxy")
    with pytest.raises(ValueError, match=r"alpha=0.0 is out of range \(0, 1\]"):
        fuse_logits(x, y, method="contrastive", alpha=0.0)
    with pytest.raises(ValueError, match=r"alpha=1.5 is out of range"):
        fuse_logits(x, y, method="contrastive_obrien", alpha=1.5)
    with pytest.raises(ValueError, match="beta=inf must be a finite number"):
        fuse_logits(x, y, method="contrastive", beta=math.inf)
    with pytest.raises(ValueError, match="alpha=nan must be a finite number"):
        fuse_logits(x, y, y, method="proxy", alpha=math.nan)
    with pytest.raises(ValueError, match="method='top' is not a fusion method"):
        fuse_logits(x, y, method="top")
    with pytest.raises(ValueError, match="needs weights="):
        fuse_logits(x, y, method="weighted")
    with pytest.raises(ValueError, match="only used with method='weighted'"):
        fuse_logits(x, y, method="contrastive", weights=(1.0, 1.0))
    with pytest.raises(ValueError, match=r"small must be 2-D, got shape \(2, 1, 10\)"):
        fuse_logits(x, y[:, None], method="contrastive")
    with pytest.raises(TypeError, match="large has dtype int32"):
        fuse_logits(x.int(), y, method="contrastive")
    with pytest.raises(ValueError, match="small has 3 rows but large has 2"):
        fuse_logits(x, torch.randn(3, 10), method="contrastive")
    with pytest.raises(ValueError, match="small_ft is on device 'meta'; the ops run on cpu or cuda"):
        fuse_logits(x, y, torch.empty(2, 10, device="meta"), method="proxy")
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="small is on cuda:0 but the other inputs are on cpu"):
            fuse_logits(x, y.cuda(), method="contrastive")
    with pytest.raises(ValueError, match="stride 1 along its last dimension"):
        fuse_logits(x, torch.randn(10, 2).t(), method="contrastive")
    with pytest.raises(ValueError, match="backend='cuda' is not available"):
        fuse_logits(x, y, method="contrastive", backend="cuda")


@pytest.mark.parametrize("splits", [2, 5])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_split_row_kernel(device, splits, dtype):
    """The split-row Triton kernel (small batches on a GPU), forced to a ragged split count, with and
    without the plausibility mask, on special values."""
    from fsgen_engine.kernels.fuse_logits import fuse_logits_triton

    if "triton" not in backends(device):
        pytest.skip("Triton is not available for this device")
    V = 3000 if device == "cpu" else 151936
    large = torch.randn(3, V) * 3
    small = torch.randn(3, V) * 3
    large[0, ::5] = -math.inf
    large[1, 10] = math.nan
    small[2, ::7] = -math.inf
    large, small = large.to(dtype).to(device), small.to(dtype).to(device)
    for method, kw in METHODS[:2] + [("weighted", {"weights": (1.0, -0.5)})]:
        ref, log_alpha = expected(large, small, None, method, kw)
        w_l, w_s, w_f, _ = resolve_weights(method, kw.get("alpha"), kw.get("beta"), kw.get("weights"))
        out = torch.full((3, V), 7.0, device=device)
        fuse_logits_triton(large, small, None, w_l, w_s, w_f, log_alpha, out, splits=splits)
        assert_fused(out, large, ref, log_alpha, dtype)
