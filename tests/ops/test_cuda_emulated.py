"""The CUDA kernels (csrc/cuda/*.cu) run on CPU tensors by the SIMT emulator (csrc/simt/simt.h, module
``_C_simt`` built by tests/_simt.py) against the torch references, plus the emulator's own checks
(warp shuffles against a Python model, atomics, barriers that must raise instead of hanging).

This is how the CUDA kernels' logic is tested on machines without a GPU. It does not test what the
emulator does not model (memory-model races, timing, shared-memory garbage, the GPU's fast-math
rounding): tests/ops/test_*.py run the real kernels where a GPU exists.
"""
import ctypes
import math

import pytest
import torch
from scipy import stats

from fsgen_engine.ops import _dispatch
from fsgen_engine.ops._native import use_cuda_emulator
from fsgen_engine.ops.fuse_logits import fuse_logits
from fsgen_engine.ops.sample import sample
from fsgen_engine.ops.token_stats import token_stats
from fsgen_engine.ops.verify import verify
from fsgen_engine.reference.verify import verify_reference
from tests._simt import cuda_emulator, emulated  # noqa: F401  (pytest fixtures)
from tests.ops.test_fuse_logits import METHODS, assert_fused, expected
from tests.ops.test_sample import allowed
from tests.ops.test_token_stats import check as check_stats

# one xdist worker builds and runs the emulator module; the others never wait on its build lock
pytestmark = [pytest.mark.xdist_group("simt"),
              pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
INF, NAN = math.inf, math.nan


@pytest.fixture(params=["off", "auto", "7"], ids=lambda s: f"split={s}")
def cuda_ops(emulated, request, monkeypatch):
    """The emulated CUDA ops with one block per row (off), the split heuristic for a 132-SM device
    (auto) and every row cut into 7 column splits (partial results merged by a second kernel)."""
    monkeypatch.setenv("FSGEN_SPLIT_ROWS", request.param)
    return emulated


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ---- the hook ------------------------------------------------------------------------------------------

def test_hook_offers_cuda_for_cpu_only_inside_the_emulator(cuda_emulator):
    cpu = torch.device("cpu")
    assert "cuda" not in _dispatch.available_backends(cpu, native="token_stats", triton_kernel=True)
    with use_cuda_emulator(cuda_emulator):
        usable = _dispatch.available_backends(cpu, native="token_stats", triton_kernel=True)
        assert usable.index("cuda") == usable.index("cpu") + 1
        # auto (and a FSGEN_BACKEND preference) never picks the emulator
        assert _dispatch.choose_backend("token_stats", cpu, "auto", native="token_stats") != "cuda"
        assert _dispatch.choose_backend("token_stats", cpu, "cuda", native="token_stats") == "cuda"
    assert "cuda" not in _dispatch.available_backends(cpu, native="token_stats", triton_kernel=True)
    with pytest.raises(ValueError, match="backend='cuda' is not available for cpu"):
        token_stats(torch.zeros(1, 4), backend="cuda")
    with pytest.raises(TypeError, match="not a SIMT emulator"):
        with use_cuda_emulator(torch):
            pass


def test_auto_ignores_emulator_under_env_preference(cuda_emulator, monkeypatch):
    monkeypatch.setenv("FSGEN_BACKEND", "cuda")
    with use_cuda_emulator(cuda_emulator):
        assert _dispatch.choose_backend("sample", torch.device("cpu"), "auto", native="sample") != "cuda"


# ---- emulator self-tests -------------------------------------------------------------------------------

def shuffle_model(x, op, arg, width):
    """Python model of CUDA's shuffles / votes for a block of len(x) threads (warps of 32)."""
    out = []
    for t in range(len(x)):
        lane, base = t % 32, t - t % 32
        if op == "idx":
            src = (lane // width) * width + arg % width
        elif op == "up":
            src = lane - arg if lane % width >= arg else lane
        elif op == "down":
            src = lane + arg if lane % width + arg < width else lane
        elif op == "xor":
            src = lane ^ arg
            src = lane if src >= (lane // width + 1) * width else src
        else:
            bits = [int(x[base + i]) & 1 for i in range(32)]
            ballot = sum(b << i for i, b in enumerate(bits))
            out.append({"ballot": ballot, "any": int(ballot != 0), "all": int(ballot == 0xFFFFFFFF)}[op])
            continue
        out.append(x[base + src])
    return out


OPS = {"idx": 0, "up": 1, "down": 2, "xor": 3, "ballot": 4, "any": 5, "all": 6}


@pytest.mark.parametrize("dtype,code", [(torch.float32, 0), (torch.int64, 1), (torch.float64, 2)], ids=str)
def test_shuffles_match_python_model(cuda_emulator, dtype, code):
    threads = 64
    x = (torch.randperm(1000)[:threads] * 3 - 7).to(dtype)
    if dtype == torch.int64:
        x += 1 << 40  # 64-bit values survive the shuffle
    for op in ("idx", "up", "down", "xor"):
        for arg in (0, 1, 3, 16, 31):
            for width in (32, 8, 4, 1):
                out = torch.empty_like(x)
                cuda_emulator.simt_test_shuffle(x.data_ptr(), out.data_ptr(), code, threads, OPS[op], arg, width)
                assert out.tolist() == shuffle_model(x.tolist(), op, arg, width), (op, arg, width)


def test_votes_match_python_model(cuda_emulator):
    for bits in (torch.randint(0, 2, (96,)), torch.ones(96, dtype=torch.int64), torch.zeros(96, dtype=torch.int64)):
        for op in ("ballot", "any", "all"):
            out = torch.empty_like(bits)
            cuda_emulator.simt_test_shuffle(bits.data_ptr(), out.data_ptr(), 1, 96, OPS[op], 0, 32)
            assert out.tolist() == shuffle_model(bits.tolist(), op, 0, 32), op


def test_shuffle_width_must_be_a_power_of_two(cuda_emulator):
    x = torch.zeros(32, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="width must be a power of 2"):
        cuda_emulator.simt_test_shuffle(x.data_ptr(), x.data_ptr(), 1, 32, 0, 0, 6)


class Totals(ctypes.Structure):  # csrc/simt/selftest.cu: Totals
    _fields_ = [("i", ctypes.c_int), ("u", ctypes.c_uint), ("ull", ctypes.c_ulonglong), ("f", ctypes.c_float),
                ("d", ctypes.c_double), ("max_block", ctypes.c_int), ("done", ctypes.c_uint),
                ("last_block", ctypes.c_int), ("shared_sum", ctypes.c_ulonglong), ("count_ok", ctypes.c_int),
                ("last_seen_ull", ctypes.c_ulonglong)]


def test_atomics_from_many_blocks_sum_exactly_and_last_block_sees_all(cuda_emulator):
    assert ctypes.sizeof(Totals) == cuda_emulator.simt_test_totals_size
    grid, block = (7, 3, 2), (32, 4, 2)
    nb, nt = math.prod(grid), math.prod(block)
    tot = Totals()
    cuda_emulator.simt_test_atomics(ctypes.addressof(tot), *grid, *block)
    n = nb * nt
    assert (tot.i, tot.u, tot.ull, tot.f, tot.d) == (n, n, n, float(n), float(n))
    assert tot.max_block == nb - 1 and tot.done == nb
    assert tot.shared_sum == nb * nt * (nt + 1) // 2  # shared-memory atomics, per block
    assert tot.count_ok == nb  # __syncthreads_count
    assert tot.last_block == nb - 1 and tot.last_seen_ull == n  # blocks run in order: the last one sees all


def test_block_order_and_thread_indices(cuda_emulator):
    grid, block = (3, 2, 2), (8, 2, 4)
    nb, nt = math.prod(grid), math.prod(block)
    ticket = torch.zeros(1, dtype=torch.int32)
    order = torch.empty(nb, dtype=torch.int32)
    ids = torch.empty(nb * nt, dtype=torch.int64)
    cuda_emulator.simt_test_order(ticket.data_ptr(), order.data_ptr(), ids.data_ptr(), *grid, *block)
    assert order.tolist() == list(range(nb))  # x fastest, then y, then z
    want = [(bz << 50) | (by << 40) | (bx << 30) | (tz << 20) | (ty << 10) | tx
            for bz in range(2) for by in range(2) for bx in range(3)
            for tz in range(4) for ty in range(2) for tx in range(8)]
    assert ids.tolist() == want


@pytest.mark.parametrize("which,match", [
    (0, r"deadlock in the launch of simt_test_bad, block \(0,0,0\).*32 wait at __syncthreads.*__syncwarp"),
    (1, r"deadlock .*waits at __syncwarp"),
    (2, r"__syncwarp: the mask 0x1 does not contain the calling lane 1"),
    (3, r"livelock"),
    (4, r"__trap\(\) called"),
])
def test_broken_kernels_raise_instead_of_hanging(cuda_emulator, which, match):
    with pytest.raises(RuntimeError, match=match):
        cuda_emulator.simt_test_bad(which, 64, 0)
    # the emulator is usable after the failed launch
    out = torch.zeros(2, dtype=torch.int32)
    cuda_emulator.simt_test_lock(out.data_ptr(), 2, 128)
    assert out.tolist() == [128, 128]


def test_bad_launch_configurations_raise(cuda_emulator):
    for threads in (48, 0, 1056):
        with pytest.raises(RuntimeError, match="needs a multiple of 32 in \\[32, 1024\\]"):
            cuda_emulator.simt_test_bad(4, threads, 0)
    with pytest.raises(RuntimeError, match="dynamic shared memory .* not supported"):
        cuda_emulator.simt_test_bad(4, 64, 1024)


def test_spin_lock_in_shared_memory_progresses(cuda_emulator):
    out = torch.zeros(3, dtype=torch.int32)
    cuda_emulator.simt_test_lock(out.data_ptr(), 3, 512)
    assert out.tolist() == [512] * 3


def test_sm_count_is_settable(cuda_emulator):
    assert cuda_emulator.sm_count() == 132
    try:
        cuda_emulator.set_sm_count(7)
        assert cuda_emulator.sm_count() == 7
        with pytest.raises(ValueError, match="positive"):
            cuda_emulator.set_sm_count(0)
    finally:
        cuda_emulator.set_sm_count(132)


# ---- token_stats ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_token_stats_matches_reference(cuda_ops, dtype):
    for B, V in [(1, 1), (3, 3), (2, 37), (3, 1000), (2, 4099)]:
        x = (torch.randn(B, V, generator=gen(V)) * 4).to(dtype)
        check_stats(token_stats(x, backend="cuda"), x)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_token_stats_strided_misaligned_and_special_rows(cuda_ops, dtype):
    V = 1001
    base = (torch.randn(6, V + 70, generator=gen(1)) * 3).to(dtype)
    x = base[:, 3:3 + V]  # row stride > V, row starts not 4-element aligned (scalar loads)
    assert x.stride(0) == V + 70
    x[0, 17] = NAN
    x[1, 5], x[1, 900] = INF, INF      # first +inf wins
    x[2] = -INF                        # no finite entry
    x[3] = 1.0                         # all tied: argmax 0, margin 0
    x[4, 100], x[4, 1000] = 50.0, 50.0  # tie of the max: lowest index, margin 0
    x[5, 1000] = 60.0                  # max in the tail elements (V % 4 == 1)
    st = token_stats(x, backend="cuda")
    check_stats(st, x)
    assert st.argmax.tolist()[1:] == [5, 0, 0, 100, 1000]
    aligned = base[:, 4:4 + V]  # vector loads
    check_stats(token_stats(aligned, backend="cuda"), aligned)


# ---- fuse_logits ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fuse_logits_matches_reference(cuda_ops, dtype):
    for B, V in [(1, 7), (3, 1001)]:
        large, small, small_ft = ((torch.randn(B, V, generator=gen(i)) * 3).to(dtype) for i in range(3))
        for method, kw in METHODS:  # weights, mask on (alpha) and off
            ref, log_alpha = expected(large, small, small_ft, method, kw)
            assert_fused(fuse_logits(large, small, small_ft, method=method, backend="cuda", **kw), large, ref,
                         log_alpha, dtype)


def test_fuse_logits_mixed_dtypes_strides_and_special_values(cuda_ops):
    B, V = 3, 1000
    large = (torch.randn(B, 2, V + 64, generator=gen(0)) * 3).to(torch.float32)[:, -1, :]
    small = (torch.randn(B, V + 7, generator=gen(1)) * 3).to(torch.bfloat16)[:, 3:]
    small_ft = (torch.randn(B, V + 1, generator=gen(2)) * 3).to(torch.float16)
    large[0, ::5] = -INF
    large[1, 10] = NAN
    small[2, ::7] = -INF
    for method, kw in METHODS:
        ref, log_alpha = expected(large, small, small_ft, method, kw)
        assert_fused(fuse_logits(large, small, small_ft, method=method, backend="cuda", **kw), large, ref,
                     log_alpha, torch.float32)


# ---- sample --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_greedy_sample_is_reference_argmax(cuda_ops, dtype):
    x = torch.randint(-3, 3, (4, 1001), generator=gen(0)).to(dtype)  # many ties
    x[0, 2] = -INF
    x[1, 7] = NAN
    x[2] = -INF
    x[3, 40], x[3, 50] = INF, INF
    out = sample(x, temperature=0.0, backend="cuda")
    assert out.tolist() == sample(x, temperature=0.0, backend="reference").tolist()
    assert out[2] == 0 and out[3] == 40


def test_sampled_tokens_stay_in_the_filtered_set_and_repeat_per_seed(cuda_ops):
    b, v = 8, 700
    x = torch.randn(b, v, generator=gen(3)) * 3
    x[::3, :100] = -INF
    x[5, ::2] = NAN
    t = torch.tensor([0.5, 1.0, 2.0, 1.0, 0.8, 1.0, 1.3, 1.0])
    k = torch.tensor([0, 1, 5, 50, 0, 20, 3, 0])
    p = torch.tensor([1.0, 0.5, 0.9, 1.0, 0.8, 0.95, 1.0, 0.3])
    m = torch.tensor([0.0, 0.1, 0.0, 0.0, 0.05, 0.0, 0.2, 0.0])
    ok = allowed(x, t, k, p, m)
    kw = dict(temperature=t, top_k=k, top_p=p, min_p=m, backend="cuda")
    outs = [sample(x, generator=gen(seed), **kw) for seed in range(3)]
    for out in outs:
        assert ok[torch.arange(b), out].all()
    assert torch.equal(sample(x, generator=gen(0), **kw), outs[0])
    assert any(not torch.equal(outs[0], o) for o in outs[1:])  # the seed matters


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_sampled_low_precision_rows(cuda_ops, dtype):
    x = (torch.randn(3, 1000, generator=gen(4)) * 3).to(dtype)
    ok = allowed(x, 0.8, 20, 0.8, 0.05)
    out = sample(x, temperature=0.8, top_k=20, top_p=0.8, min_p=0.05, generator=gen(1), backend="cuda")
    assert ok[torch.arange(3), out].all()


def test_sample_distribution_chi_square(cuda_ops):
    from fsgen_engine.reference.sample import filtered_probs

    row = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -INF])
    n = 400
    for i, cfg in enumerate([dict(temperature=1.0), dict(temperature=1.5, top_k=6, top_p=0.9, min_p=0.1)]):
        full = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0) | cfg
        probs = filtered_probs(row[None], *(torch.tensor([full[k]]) for k in ("temperature", "top_k", "top_p",
                                                                                 "min_p")))[0]
        out = sample(row.repeat(n, 1), generator=gen(100 + i), backend="cuda", **cfg)
        counts = torch.bincount(out, minlength=8).double()
        support = probs > 0
        assert counts[~support].sum() == 0
        pval = stats.chisquare(counts[support].numpy(), (probs[support] * n).numpy()).pvalue
        assert pval > 1e-4, (cfg, counts, probs * n)


# ---- verify --------------------------------------------------------------------------------------------

def _params(b, t):
    z = torch.zeros(b)
    return dict(temperature=torch.full((b,), t), top_k=torch.zeros(b, dtype=torch.int64), top_p=z + 1.0, min_p=z)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_greedy_verify_matches_reference(cuda_ops, dtype):
    b, k, v = 4, 3, 301
    logits = torch.randint(-3, 3, (b, k + 1, v), generator=gen(0)).to(dtype)
    logits[0, 1, 9] = NAN
    logits[2, :, :] = -INF
    target = logits.float().nan_to_num(nan=-INF).argmax(-1)
    draft = target[:, :k].clone()
    draft[1, 1] = (draft[1, 1] + 1) % v   # rejected at position 1
    draft[3, 0] = v - 1 if draft[3, 0] != v - 1 else 0
    num_draft = torch.tensor([3, 3, 2, 0])
    got = verify(draft, logits, num_draft=num_draft, temperature=0.0, backend="cuda")
    want = verify_reference(draft, logits, None, num_draft, **_params(b, 0.0))
    assert [g.tolist() for g in got] == [w.tolist() for w in want]


def test_sampled_verify_is_well_formed_and_reproducible(cuda_ops):
    b, k, v = 4, 3, 200
    logits = torch.randn(b, k + 1, v, generator=gen(1)) * 2
    q = torch.softmax(torch.randn(b, k, v, generator=gen(2)) * 2, -1)
    draft = torch.multinomial(q.reshape(-1, v), 1, generator=gen(3)).reshape(b, k)
    num_draft = torch.tensor([3, 2, 1, 0])
    kw = dict(draft_probs=q, num_draft=num_draft, temperature=torch.tensor([1.0, 0.7, 1.5, 1.0]),
              top_k=torch.tensor([0, 20, 0, 5]), top_p=torch.tensor([1.0, 0.9, 1.0, 1.0]), backend="cuda")
    runs = [verify(draft, logits, generator=gen(seed), **kw) for seed in (5, 5, 6, 7, 8)]
    assert [r.tolist() for r in runs[0]] == [r.tolist() for r in runs[1]]
    for acc, nxt in runs:
        assert ((acc >= 0) & (acc <= num_draft)).all() and ((nxt >= 0) & (nxt < v)).all()
        # the token after the accepted drafts is allowed by that position's filter
        rows = logits[torch.arange(b), acc]
        ok = allowed(rows, kw["temperature"], kw["top_k"], kw["top_p"], torch.zeros(b))
        assert ok[torch.arange(b), nxt].all()
    # with q equal to p (no filter) every draft is accepted
    p = torch.softmax(logits[:, :k].double(), -1).float()
    acc, _ = verify(draft, logits, draft_probs=p, num_draft=num_draft, temperature=1.0, generator=gen(9),
                    backend="cuda")
    assert torch.equal(acc, num_draft)
