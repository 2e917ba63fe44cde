"""The split-row CUDA kernels (small batches: each vocabulary row cut over many blocks) against the
references and against the one-block-per-row CUDA kernels.

Runs the CUDA kernels of csrc/cuda on every target present: under the SIMT emulator on CPU tensors
(always; tests/_simt.py) and on a real GPU when one exists. ``FSGEN_SPLIT_ROWS`` forces the split
count, so small shapes exercise ragged splits, rows whose maximum, ties, NaN or +inf sit in any
split, and every stage of the sample / verify pipeline.

For sample and verify the split pipeline computes the same thresholds and uses the same noise per
(row, position, column) as the one-block kernel, so for one seed both must return the same tokens;
the one-block kernel is itself checked against the reference's distribution (chi-square in
test_sample.py / test_verify.py) on the GPU. Sums are taken in a different order, which could flip a
token only when a race or an acceptance test is decided within float rounding: with the continuous
random inputs here that has probability far below 1e-6 per test.
"""
import pytest
import torch

from fsgen_engine import ops
from fsgen_engine.ops._native import has_native_cuda, use_cuda_emulator
from fsgen_engine.ops.fuse_logits import resolve_weights
from fsgen_engine.reference.fuse_logits import fuse_logits_reference
from fsgen_engine.reference.sample import filtered_probs
from fsgen_engine.reference.token_stats import token_stats_reference
from tests._simt import build_cuda_emulator

# one xdist worker builds and loads the emulator once (tests/_simt.py); the GPU target shares it
pytestmark = pytest.mark.xdist_group("simt")
TARGETS = ["emulated"] + (["gpu"] if torch.cuda.is_available() and has_native_cuda("sample_cuda") else [])
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
STATS_TOL = {torch.float32: (2e-5, 2e-6), torch.float16: (3e-5, 3e-6), torch.bfloat16: (3e-5, 3e-6)}
INF, NAN = float("inf"), float("nan")


@pytest.fixture(params=TARGETS)
def dev(request):
    """The device whose tensors the ``cuda`` backend runs on: the emulator takes cpu tensors."""
    if request.param == "gpu":
        yield "cuda"
        return
    with use_cuda_emulator(build_cuda_emulator()):
        yield "cpu"


def splits_env(monkeypatch, splits):
    monkeypatch.setenv("FSGEN_SPLIT_ROWS", "off" if splits == 1 else str(splits))


def gen(dev, seed):
    return torch.Generator(device=dev).manual_seed(seed)


# ---- token_stats ----

def special_rows(V, dtype):
    x = torch.randn(7, V) * 3
    x[1, V - 1] = NAN                      # NaN in the last split
    x[2, V // 2] = INF                     # +inf mid-row
    x[2, V - 2] = INF                      # a later +inf: the first one wins
    x[3] = -INF                            # all -inf
    x[4, :] = 1.0                          # all ties: argmax 0, margin 0
    x[5, V - 1] = 50.0                     # the max in the ragged last split
    x[6, : V // 2] = -INF                  # a masked first half
    return x.to(dtype)


@pytest.mark.parametrize("splits", [1, 2, 3, 7])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("V", [37, 1001])
def test_token_stats_split_rows(dev, monkeypatch, splits, dtype, V):
    splits_env(monkeypatch, splits)
    x = special_rows(V, dtype)
    got = ops.token_stats(x.to(dev), backend="cuda")
    want = token_stats_reference(x.double())
    rtol, atol = STATS_TOL[dtype]
    assert torch.equal(got.argmax.cpu(), want[3])
    for name, g, w in zip(("entropy", "max_prob", "margin"), got[:3], want[:3]):
        torch.testing.assert_close(g.cpu().double(), w, rtol=rtol, atol=atol, equal_nan=True, msg=lambda m: f"{name}: {m}")
    torch.testing.assert_close(got.logsumexp.cpu().double(), want[4], rtol=rtol, atol=atol, equal_nan=True)


def test_token_stats_strided_rows(dev, monkeypatch):
    splits_env(monkeypatch, 5)
    base = torch.randn(3, 4, 1003) * 2
    x = base[:, -1, :]                     # row stride 4 x 1003, unaligned rows
    got = ops.token_stats(base.to(dev)[:, -1, :], backend="cuda")
    want = token_stats_reference(x.double())
    assert torch.equal(got.argmax.cpu(), want[3])
    torch.testing.assert_close(got.entropy.cpu().double(), want[0], rtol=2e-5, atol=2e-6)


# ---- fuse_logits ----

@pytest.mark.parametrize("splits", [1, 3, 7])
@pytest.mark.parametrize("method", ["contrastive", "proxy", "weighted"])
def test_fuse_logits_split_rows(dev, monkeypatch, splits, method):
    splits_env(monkeypatch, splits)
    V = 1001
    large = torch.randn(3, V + 3) * 3       # wider than small: fused over the common V
    large[0, V - 1] = 40.0                  # the mask's max in the last split
    large[1, 5] = NAN
    small = (torch.randn(3, V) * 2).to(torch.bfloat16)
    ft = (torch.randn(3, V) * 2).to(torch.float16)
    kw = {"contrastive": dict(alpha=0.1, beta=0.5), "proxy": {}, "weighted": dict(weights=(1.0, -0.5, 0.25))}[method]
    got = ops.fuse_logits(large.to(dev), small.to(dev), ft.to(dev), method=method, backend="cuda", **kw)
    w = resolve_weights(method, kw.get("alpha"), kw.get("beta"), kw.get("weights"))
    want = fuse_logits_reference(large.double(), small.double(), ft.double(), *w)
    torch.testing.assert_close(got.cpu().double(), want, rtol=1e-6, atol=1e-5, equal_nan=True)


# ---- sample ----

def sample_cases(V):
    x = torch.randn(8, V) * 2.5
    x[5, 3] = NAN
    x[5, V - 1] = INF                       # +inf: the only candidate
    x[6] = -INF                             # no finite logit: token 0
    x[7, : V - 2] = -INF                    # two live tokens, both in the last split
    t = torch.tensor([0.0, 1.0, 0.8, 1.3, 0.6, 1.0, 1.0, 1.0])
    k = torch.tensor([0, 0, 5, 0, 40, 3, 0, 0])
    p = torch.tensor([1.0, 1.0, 1.0, 0.8, 0.9, 1.0, 1.0, 0.5])
    m = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.05, 0.0, 0.0, 0.0])
    return x, t, k, p, m


@pytest.mark.parametrize("splits", [2, 3, 5])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_sample_split_equals_one_block_kernel(dev, monkeypatch, splits, dtype):
    V = 613
    x, t, k, p, m = sample_cases(V)
    x = x.to(dtype)
    d = lambda v: v.to(dev)  # noqa: E731
    allowed = filtered_probs(x.float(), t, k, p, m) > 0
    for seed in range(3):
        splits_env(monkeypatch, 1)
        one = ops.sample(d(x), temperature=d(t), top_k=d(k), top_p=d(p), min_p=d(m), generator=gen(dev, seed),
                         backend="cuda").cpu()
        splits_env(monkeypatch, splits)
        split = ops.sample(d(x), temperature=d(t), top_k=d(k), top_p=d(p), min_p=d(m), generator=gen(dev, seed),
                           backend="cuda").cpu()
        assert torch.equal(split, one), (seed, split, one)
        assert allowed[torch.arange(8), split].all(), split
    assert split[0] == x[0].float().argmax() and split[5] == V - 1 and split[6] == 0
    greedy = ops.sample(d(x), temperature=0.0, generator=gen(dev, 0), backend="cuda").cpu()  # all_greedy
    assert torch.equal(greedy, torch.nan_to_num(x.float(), nan=-INF).argmax(-1))


def test_sample_split_top_p_mass_and_min_p(dev, monkeypatch):
    """Top-p alone, min-p alone and a top-k larger than the row, on a longer row."""
    V = 2500
    x = torch.randn(4, V) * 4
    t = torch.tensor([1.0, 0.7, 1.0, 1.2])
    k = torch.tensor([0, 0, 5000, 10])
    p = torch.tensor([0.95, 1.0, 0.6, 0.99])
    m = torch.tensor([0.0, 0.2, 0.0, 0.01])
    d = lambda v: v.to(dev)  # noqa: E731
    for seed in range(2):
        splits_env(monkeypatch, 1)
        one = ops.sample(d(x), temperature=d(t), top_k=d(k), top_p=d(p), min_p=d(m), generator=gen(dev, seed),
                         backend="cuda").cpu()
        splits_env(monkeypatch, 4)
        split = ops.sample(d(x), temperature=d(t), top_k=d(k), top_p=d(p), min_p=d(m), generator=gen(dev, seed),
                           backend="cuda").cpu()
        assert torch.equal(split, one)
        assert (filtered_probs(x, t, k, p, m) > 0)[torch.arange(4), split].all()


# ---- verify ----

def verify_inputs(b, k, V, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k + 1, V, generator=g) * 2
    q = torch.softmax(torch.randn(b, k, V, generator=g) * 2, -1)
    draft = torch.multinomial(q.reshape(-1, V), 1, generator=g).reshape(b, k)
    draft[0] = logits[0, :k].argmax(-1)      # row 0 drafts the target's argmax
    return draft, logits, q


def verify_both(dev, monkeypatch, splits, draft, logits, q, nd, seed, **params):
    d = lambda v: None if v is None else v.to(dev)  # noqa: E731
    out = []
    for s in (1, splits):
        splits_env(monkeypatch, s)
        acc, nxt = ops.verify(d(draft), d(logits), draft_probs=d(q), num_draft=d(nd), generator=gen(dev, seed),
                              backend="cuda", _validated=True,
                              **{n: v if isinstance(v, float) else d(v) for n, v in params.items()})
        out.append((acc.cpu(), nxt.cpu()))
    return out


@pytest.mark.parametrize("splits", [2, 3])
@pytest.mark.parametrize("scalar", [True, False], ids=["all_greedy", "per_row"])
def test_verify_greedy_split_matches_reference(dev, monkeypatch, splits, scalar):
    """A scalar temperature 0 tells the kernel every row is greedy (argmax passes only); a [B] tensor
    of zeros takes the whole pipeline: both must give the reference's greedy verification."""
    b, k, V = 4, 3, 701
    draft, logits, _ = verify_inputs(b, k, V)
    draft[1, 1] = V + 5                      # out of range: rejected
    logits[2, 0, 7] = NAN                    # NaN never wins the argmax
    nd = torch.tensor([3, 2, 0, 3])
    (a1, n1), (a2, n2) = verify_both(dev, monkeypatch, splits, draft, logits, None, nd, 0,
                                     temperature=0.0 if scalar else torch.zeros(b))
    clean = torch.nan_to_num(logits, nan=-INF)
    target = clean.argmax(-1)
    for r in range(b):
        n = int(nd[r])
        acc = 0
        while acc < n and draft[r, acc] == target[r, acc]:
            acc += 1
        assert a2[r] == acc and n2[r] == target[r, acc], (r, a2[r], n2[r])
    assert torch.equal(a1, a2) and torch.equal(n1, n2)


@pytest.mark.parametrize("splits", [2, 4])
@pytest.mark.parametrize("with_q", [True, False])
def test_verify_sampled_split_equals_one_block_kernel(dev, monkeypatch, splits, with_q):
    b, k, V = 5, 3, 523
    draft, logits, q = verify_inputs(b, k, V, seed=splits)
    logits[3, 1, 11] = INF                    # a +inf target: one-hot
    nd = torch.tensor([3, 1, 0, 3, 2])
    t = torch.tensor([1.0, 0.8, 1.0, 0.0, 1.2])
    top_k = torch.tensor([0, 7, 0, 0, 50])
    top_p = torch.tensor([1.0, 1.0, 0.9, 1.0, 0.95])
    min_p = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.02])
    for seed in range(3):
        (a1, n1), (a2, n2) = verify_both(dev, monkeypatch, splits, draft, logits, q if with_q else None, nd, seed,
                                         temperature=t, top_k=top_k, top_p=top_p, min_p=min_p)
        assert torch.equal(a1, a2) and torch.equal(n1, n2), (seed, a1, a2, n1, n2)
        assert (a2 <= nd).all() and ((n2 >= 0) & (n2 < V)).all()


def test_cuda_workspace_is_checked(dev):
    """A workspace smaller than the split pipeline needs is refused with the fix, never overrun."""
    from fsgen_engine.ops._native import native_function

    fn = native_function("token_stats_cuda", torch.device(dev))
    x = torch.randn(2, 300, device=dev)
    out = torch.empty(4, 2, device=dev)
    arg = torch.empty(2, dtype=torch.int64, device=dev)
    with pytest.raises(ValueError, match="workspace_bytes=8 but"):
        fn(logits=x.data_ptr(), batch=2, vocab=300, row_stride=300, dtype=0, out_stats=out.data_ptr(),
           out_argmax=arg.data_ptr(), splits=3, workspace=x.data_ptr(), workspace_bytes=8, device=0, stream=0)


# ---- distributions (chi-square; P_THRESHOLD per assertion is the false-failure rate) ----

P_THRESHOLD = 1e-4


def boundary_rows(V=12):
    """Three rows whose kept sets hinge on the filter boundaries, tokens spread over the 3 splits:
    top-p 0.9 over masses (0.45, 0.44, 0.11) keeps all three (0.89 < 0.9); top-k 2 over
    (0.4, 0.35, 0.25) drops the third; min-p 0.3 over (0.5, 0.3, 0.2) keeps all three (0.2/0.5 >= 0.3)."""
    rows = torch.full((3, V), -30.0)
    for r, (cols, probs) in enumerate([((1, 6, 10), (0.45, 0.44, 0.11)), ((0, 5, 11), (0.4, 0.35, 0.25)),
                                       ((3, 4, 9), (0.5, 0.3, 0.2))]):
        rows[r, list(cols)] = torch.tensor(probs).log()
    t = torch.ones(3)
    k = torch.tensor([0, 2, 0])
    p = torch.tensor([0.9, 1.0, 1.0])
    m = torch.tensor([0.0, 0.0, 0.3])
    return rows, t, k, p, m


def check_counts(counts, probs, n, what):
    from scipy import stats

    support = probs > 0
    assert counts[~support].sum() == 0, (what, counts, probs)
    pval = stats.chisquare(counts[support].numpy(), (probs[support] * n).numpy()).pvalue
    assert pval > P_THRESHOLD, (what, counts, probs * n, pval)


def test_sample_split_distribution(dev, monkeypatch):
    splits_env(monkeypatch, 3)
    rows, t, k, p, m = boundary_rows()
    n = 400
    rep = lambda v: v.repeat_interleave(n, 0).to(dev)  # noqa: E731
    out = ops.sample(rep(rows), temperature=rep(t), top_k=rep(k), top_p=rep(p), min_p=rep(m),
                     generator=gen(dev, 7), backend="cuda").cpu().view(3, n)
    probs = filtered_probs(rows, t, k, p, m).double()
    for r in range(3):
        check_counts(torch.bincount(out[r], minlength=rows.shape[1]).double(), probs[r], n, f"row {r}")


def test_verify_split_distribution(dev, monkeypatch):
    """Lossless: the first token after verification (draft if accepted, else the correction) follows
    the filtered target on the top-p boundary row, for a draft that proposes target token 6
    (p = 0.44) with q = 0.9: the correction must then come from the residual max(0, p - q)."""
    splits_env(monkeypatch, 3)
    rows, t, k, p, m = boundary_rows()
    n, V = 500, rows.shape[1]
    logits = rows[0].expand(n, 2, V).contiguous()
    q = torch.full((V,), 0.1 / (V - 1))
    q[6] = 0.9
    draft = torch.multinomial(q, n, replacement=True, generator=torch.Generator().manual_seed(2))[:, None]
    d = lambda v: v.to(dev)  # noqa: E731
    acc, nxt = ops.verify(d(draft), d(logits), draft_probs=d(q.expand(n, 1, V).contiguous()),
                          temperature=1.0, top_p=0.9, generator=gen(dev, 3), backend="cuda")
    first = torch.where(acc.cpu() > 0, draft[:, 0], nxt.cpu())
    probs = filtered_probs(rows[:1], t[:1], k[:1], p[:1], m[:1])[0].double()
    check_counts(torch.bincount(first, minlength=V).double(), probs, n, "verify")


@pytest.mark.skipif("gpu" not in TARGETS, reason="CUDA graph capture needs a GPU with the CUDA kernels built")
def test_split_rows_replay_in_a_cuda_graph(monkeypatch):
    """The split pipelines (workspace from torch's allocator, a memset node, 3 to 16 launches) capture
    into one CUDA graph and give, on replay with new inputs, what the references give."""
    from fsgen_engine.ops import SamplingTensors

    splits_env(monkeypatch, 3)
    dev = "cuda"
    B, K, V = 2, 3, 5000
    x = torch.zeros(B, V, device=dev)
    logits = torch.zeros(B, K + 1, V, device=dev)
    draft = torch.zeros(B, K, dtype=torch.int64, device=dev)
    params = SamplingTensors.prepare(B, dev, temperature=0.8, top_k=50, top_p=0.9)
    greedy = SamplingTensors.prepare(B, dev, temperature=0.0)
    g = torch.Generator(device=dev).manual_seed(0)

    def step():
        st = ops.token_stats(x, backend="cuda")
        tok = ops.sample(x, params=params, generator=g, backend="cuda")
        acc, nxt = ops.verify(draft, logits, params=greedy, backend="cuda", _validated=True)
        return st, tok, acc, nxt

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    new_x = torch.randn(B, V) * 3
    new_logits = torch.randn(B, K + 1, V) * 3
    target = new_logits.argmax(-1)
    new_draft = target[:, :K].clone()
    new_draft[1, 1] = (new_draft[1, 1] + 1) % V            # row 1 is rejected at position 1
    x.copy_(new_x)
    logits.copy_(new_logits)
    draft.copy_(new_draft)
    graph.replay()
    torch.cuda.synchronize()
    st, tok, acc, nxt = (o.cpu() if isinstance(o, torch.Tensor) else o for o in out)
    want = token_stats_reference(new_x.double())
    assert torch.equal(st.argmax.cpu(), want[3])
    torch.testing.assert_close(st.entropy.cpu().double(), want[0], rtol=2e-5, atol=2e-6)
    allowed = filtered_probs(new_x, params.temperature.cpu(), params.top_k.cpu(), params.top_p.cpu(),
                             params.min_p.cpu()) > 0
    assert allowed[torch.arange(B), tok].all()
    assert acc.tolist() == [K, 1] and nxt.tolist() == [target[0, K].item(), target[1, 1].item()]
