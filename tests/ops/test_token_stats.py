"""ops.token_stats: every backend present against the float64 reference on the same (rounded) inputs."""
import math

import pytest
import torch

from fsgen_engine.ops.token_stats import TokenStats, token_stats
from fsgen_engine.ops._dispatch import available_backends
from fsgen_engine.reference.token_stats import token_stats_reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Kernels accumulate in float32 whatever the input dtype; the inputs are rounded before the float64
# reference sees them, so the tolerance covers float32 accumulation only (16-bit inputs have wider
# gaps between values, so their softmax sums have fewer cancellations but larger ties).
TOL = {torch.float32: (2e-5, 2e-6), torch.float16: (3e-5, 3e-6), torch.bfloat16: (3e-5, 3e-6)}
FIELDS = TokenStats._fields
# numpy warns about NaN intermediates the interpreter computes (and discards) for NaN/inf rows
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def backends(device):
    return [b for b in available_backends(torch.device(device), native="token_stats", triton_kernel=True)]


def interpreted(backend, device):
    return backend == "triton" and device == "cpu"


def check(stats, logits, dtype=None):
    ref = token_stats_reference(logits.double())
    rtol, atol = TOL[dtype or logits.dtype]
    assert isinstance(stats, TokenStats)
    for name, got, want in zip(FIELDS, stats, ref):
        assert got.shape == (logits.shape[0],), name
        if name == "argmax":
            assert got.dtype == torch.int64
            torch.testing.assert_close(got.cpu(), want.cpu(), rtol=0, atol=0, msg=lambda m: f"argmax: {m}")
        else:
            assert got.dtype == torch.float32, name
            torch.testing.assert_close(got.cpu().double(), want.cpu(), rtol=rtol, atol=atol, equal_nan=True,
                                       msg=lambda m, n=name: f"{n}: {m}")


def make(B, V, dtype, device, scale=4.0):
    return (torch.randn(B, V) * scale).to(dtype).to(device)


# big vocabularies only on the compiled backends; the Triton interpreter gets small shapes
SIZES = [(1, 7), (3, 7), (64, 7), (1, 1000), (3, 1000), (64, 1000), (1, 5000), (3, 5000),
         (1, 32000), (3, 32000), (64, 32000), (3, 49152), (1, 151936), (3, 151936), (16, 151936)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,V", SIZES)
def test_matches_reference(device, B, V, dtype):
    x = make(B, V, dtype, device)
    for backend in backends(device):
        if interpreted(backend, device) and (V > 5000 or B > 3):
            continue
        if backend == "reference" and B * V > 20_000:
            continue
        check(token_stats(x, backend=backend), x)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_strided_rows_no_copy(device, dtype):
    # last position of [B, T, V] and a column slice of a padded buffer: row stride != V
    for V in (1000, 32000):
        full = make(3, 4 * V, dtype, device).view(3, 4, V)
        padded = make(3, V + 13, dtype, device)
        for x in (full[:, -1, :], padded[:, 5:5 + V]):
            assert x.stride(0) != V and not x.is_contiguous()
            for backend in backends(device):
                if interpreted(backend, device) and V > 5000:
                    continue
                check(token_stats(x, backend=backend), x)


def special_rows(V, dtype, device):
    x = make(7, V, torch.float32, "cpu")
    x[0, 1::3] = -math.inf              # -inf tokens in a finite row
    x[1, :] = -math.inf                 # all -inf
    x[2, V // 2] = math.nan             # NaN: argmax points at the first NaN
    x[2, V - 1] = math.nan
    x[3, V - 2] = math.inf              # +inf
    x[3, V - 1] = math.inf
    x[4, :] = 1.5                       # all equal: uniform, argmax 0, margin 0
    x[5, :] = -math.inf
    x[5, V - 1] = 0.0                   # single finite token: entropy 0, max_prob 1
    x[6, 0] = math.nan                  # NaN at index 0 with -inf elsewhere
    x[6, 1:] = -math.inf
    return x.to(dtype).to(device)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("V", [7, 1000, 4500])
def test_special_rows(device, V, dtype):
    x = special_rows(V, dtype, device)
    for backend in backends(device):
        s = token_stats(x, backend=backend)
        check(s, x)
        assert s.argmax.tolist()[:4] == [s.argmax[0].item(), 0, V // 2, V - 2]
        assert s.argmax[6].item() == 0
        for name in ("entropy", "max_prob", "margin", "logsumexp"):
            assert math.isnan(getattr(s, name)[2].item()), name  # NaN row
        assert s.logsumexp[1].item() == -math.inf and math.isnan(s.entropy[1].item())
        assert s.logsumexp[3].item() == math.inf and math.isnan(s.max_prob[3].item())
        assert s.margin[4].item() == 0.0
        assert abs(s.entropy[4].item() - math.log(V)) < 1e-4
        assert s.argmax[5].item() == V - 1 and s.max_prob[5].item() == 1.0 and s.entropy[5].item() == 0.0
        assert bool(((s.argmax >= 0) & (s.argmax < V)).all())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_ties_lowest_index(device, dtype):
    # equal maxima across lanes, SIMD chunks (2048 on CPU) and Triton blocks: the lowest index wins
    V = 4500
    x = make(4, V, torch.float32, "cpu", scale=1.0)
    x[0, [3, 7]] = 10.0
    x[1, [4499, 2050, 2]] = 10.0
    x[2, [2048, 4096]] = 10.0
    x[3, [100, 2148, 101]] = 10.0
    x = x.to(dtype).to(device)
    for backend in backends(device):
        s = token_stats(x, backend=backend)
        assert s.argmax.tolist() == [3, 2, 2048, 100]
        assert s.margin.tolist() == [0.0] * 4
        check(s, x)


def test_float64_reference_definition():
    # the reference is the definition: compare it with textbook formulas in float64
    x = torch.randn(5, 300, dtype=torch.float64) * 3
    ent, mp, mg, am, lse = token_stats_reference(x)
    p = torch.softmax(x, -1)
    torch.testing.assert_close(ent, -(p * p.log()).sum(-1))
    torch.testing.assert_close(mp, p.max(-1).values)
    top = p.topk(2, -1).values
    torch.testing.assert_close(mg, top[:, 0] - top[:, 1])
    torch.testing.assert_close(lse, torch.logsumexp(x, -1))
    assert torch.equal(am, x.argmax(-1)) and ent.dtype == torch.float64


def test_empty_batch(device):
    x = torch.randn(0, 10, device=device)
    for backend in backends(device):
        s = token_stats(x, backend=backend)
        assert s.entropy.shape == (0,) and s.argmax.shape == (0,)


def test_validation_errors():
    with pytest.raises(ValueError, match=r"logits must be 2-D, got shape \(2, 3, 4\)"):
        token_stats(torch.randn(2, 3, 4))
    with pytest.raises(TypeError, match="logits has dtype int64.*convert"):
        token_stats(torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="logits must be a torch.Tensor"):
        token_stats([[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"stride 1 along its last dimension.*contiguous\(\)"):
        token_stats(torch.randn(8, 4).t())
    with pytest.raises(ValueError, match="size 0 along dim 1"):
        token_stats(torch.randn(2, 0))
    with pytest.raises(ValueError, match="backend='gpu' is not a backend"):
        token_stats(torch.randn(2, 4), backend="gpu")
    with pytest.raises(ValueError, match="backend='cuda' is not available"):
        token_stats(torch.randn(2, 4), backend="cuda")


@pytest.mark.parametrize("splits", [2, 3, 7])
@pytest.mark.parametrize("dtype", DTYPES)
def test_split_row_kernel_matches_reference(device, splits, dtype):
    """The split-row Triton kernel (small batches on a GPU) on ordinary and special rows, with a
    split count that leaves a ragged last split."""
    from fsgen_engine.kernels.token_stats_split import token_stats_split_triton
    from fsgen_engine.ops._dispatch import available_backends as avail

    if "triton" not in avail(torch.device(device), native=None, triton_kernel=True):
        pytest.skip("Triton is not available for this device")
    V = 4500 if device == "cpu" else 151936
    for x in (make(3, V, dtype, device), special_rows(V, dtype, device)):
        out = torch.full((4, x.shape[0]), 123.0, device=device)
        arg = torch.full((x.shape[0],), -5, dtype=torch.int64, device=device)
        token_stats_split_triton(x, out, arg, splits)
        check(TokenStats(out[0], out[1], out[2], arg, out[3]), x)
